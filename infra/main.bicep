// aks-apim-sync in Azure: the Function App (Flex Consumption), its storage without shared keys, Application
// Insights, the identities and the narrowest role assignments, the Event Grid subscriptions that trigger it,
// the watcher's topic and identity, and the alert rules. `azd up` (azure.yaml) or:
//   az deployment group create -g <app resource group> -f infra/main.bicep -p infra/main.parameters.json
// The APIM instance and the AKS cluster already exist (same subscription); modules reach into their resource
// groups for what must live there. tests/deploy holds the app settings, the custom role and the event types
// here equal to what the code reads, calls and routes.

targetScope = 'resourceGroup'

@description('Prefix of every resource name made here.')
@minLength(3)
@maxLength(16)
param namePrefix string = 'apimsync'

param location string = resourceGroup().location

@description('Resource group of the APIM instance.')
param apimResourceGroup string

@description('Name of the APIM instance.')
param apimServiceName string

@description('Resource group of the AKS cluster.')
param aksResourceGroup string

@description('Name of the AKS cluster (its ARM name).')
param aksClusterName string

@description('AKS_CA_CERT: PEM of the cluster CA (kubectl config view --raw -o jsonpath=\'{.clusters[0].cluster.certificate-authority-data}\' | base64 -d).')
param aksCaCertificate string

@description('KEYVAULT_CERT_SECRET_ID (CLIENT_CERTIFICATE_SOURCE keyvault): the secret id of the certificate APIM presents.')
param keyVaultCertificateSecretId string = ''

@description('CLUSTER_NAME: part of every backend id and owner mark; letters, digits, ".", "_", "-".')
param clusterName string = aksClusterName

@description('OWNER_ID: this deployment\'s owner id, unique per deployment.')
param ownerId string

@description('SYNC_POLICY: sync (deletes what is gone), upsert-only or create-only.')
@allowed(['sync', 'upsert-only', 'create-only'])
param syncPolicy string = 'upsert-only'

@description('Publish APIs from the api-* annotations (APIS_ENABLED).')
param enableApis bool = true

@description('Create products named in annotations that do not exist (CREATE_PRODUCTS).')
param createProducts bool = false

@description('Keep the entry points\' allow-lists in step with APIM\'s addresses (ALLOWLIST_ENABLED).')
param enableAllowLists bool = true

@description('CLIENT_CERTIFICATE_SOURCE: managed (own CA), keyvault, or none (no mTLS).')
@allowed(['managed', 'keyvault', 'none'])
param clientCertificateSource string = 'managed'

@description('ROUTE_KINDS: Ingress, HTTPRoute, or Ingress,HTTPRoute while migrating.')
@allowed(['Ingress', 'HTTPRoute', 'Ingress,HTTPRoute'])
param routeKinds string = 'Ingress'

@description('GATEWAY_ALLOWLIST (with HTTPRoute): infrastructure, generated-service and/or istio, comma-separated.')
param gatewayAllowList string = 'infrastructure'

@description('CA_KEYVAULT_URL: keep the managed CA in this Key Vault instead of a Kubernetes Secret; empty: a Secret.')
param caKeyVaultName string = ''

@description('Resource group of that Key Vault.')
param caKeyVaultResourceGroup string = resourceGroup().name

@description('The watcher\'s Kubernetes namespace and service account (workload identity).')
param watcherNamespace string = 'aks-apim-sync'
param watcherServiceAccount string = 'aks-apim-sync-watcher'

@description('Python version of the Functions runtime; the one the tests run.')
@allowed(['3.11'])
param pythonVersion string = '3.11'

@description('Who is told when an alert fires (an action group id); empty: alerts without a notification.')
param actionGroupId string = ''

@description('CERT_VALIDITY_DAYS and CERT_RENEW_FRACTION, for the certificate-expiry alert threshold.')
param certificateValidityDays int = 90
param certificateRenewPercent int = 33

var suffix = uniqueString(resourceGroup().id, namePrefix)
var storageName = toLower(take('${namePrefix}${suffix}', 24))
var deploymentContainer = 'app-package'
var deadLetterContainer = 'event-dead-letters'
var apimId = resourceId(apimResourceGroup, 'Microsoft.ApiManagement/service', apimServiceName)
var aksId = resourceId(aksResourceGroup, 'Microsoft.ContainerService/managedClusters', aksClusterName)
var withMtls = clientCertificateSource != 'none'

resource aks 'Microsoft.ContainerService/managedClusters@2024-09-01' existing = {
  name: aksClusterName
  scope: resourceGroup(aksResourceGroup)
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs-${suffix}'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-insights-${suffix}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its storage over the public endpoint; identity-only access (no shared key) is the control here
  // checkov:skip=CKV_AZURE_59: as above: public network access stays on; blobs are never public (allowBlobPublicAccess false) and shared keys are off
  // checkov:skip=CKV_AZURE_206: zone-redundant (ZRS); the account holds only the deployment package and a lock blob, both rebuilt by a deploy
  // checkov:skip=CKV_AZURE_43: the name is computed (take(toLower(prefix + uniqueString), 24)), which the check cannot evaluate; it always fits the rules
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_ZRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
  properties: { publicAccess: 'None' }
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainer
  properties: { publicAccess: 'None' }
}

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-app-${suffix}'
  location: location
}

resource watcherIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-watcher-${suffix}'
  location: location
}

resource watcherFederation 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = {
  parent: watcherIdentity
  name: 'aks-service-account'
  properties: {
    issuer: aks.properties.oidcIssuerProfile.issuerURL
    subject: 'system:serviceaccount:${watcherNamespace}:${watcherServiceAccount}'
    audiences: ['api://AzureADTokenExchange']
  }
}

var blobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

// The host and the rotation lock: blob data only, on this one account.
resource appStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, blobDataOwner)
  scope: storage
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataOwner)
  }
}

// Telemetry with Entra ID (local auth is off on the Application Insights resource).
resource appInsightsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, appIdentity.id, monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy for Flex Consumption depends on the region; runs are idempotent and retried by their triggers
  name: '${namePrefix}-plan-${suffix}'
  location: location
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to the function and operators call resync/doctor over the public endpoint, both behind function keys
  // checkov:skip=CKV_AZURE_17: client certificates would refuse Event Grid's deliveries; the HTTP functions take function keys
  // checkov:skip=CKV_AZURE_212: serverless on purpose: triggers start instances; a lost run is redone by the next event or the timer
  // checkov:skip=CKV_AZURE_213: a Functions app has no HTTP health endpoint to probe; failing runs raise alerts (modules/alerts.bicep)
  name: '${namePrefix}-${suffix}'
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${appIdentity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertMode: 'Optional'
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: appIdentity.id }
        }
      }
      scaleAndConcurrency: {
        // Several instances would spend one ARM budget; the runs coalesce within an instance (README, Performance).
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: { name: 'python', version: pythonVersion }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // The host's storage through the app's identity (no shared key).
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: appIdentity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD' }
        // DefaultAzureCredential takes the user-assigned identity by its client id.
        { name: 'AZURE_CLIENT_ID', value: appIdentity.properties.clientId }
        { name: 'APIM_SUBSCRIPTION_ID', value: subscription().subscriptionId }
        { name: 'APIM_RESOURCE_GROUP', value: apimResourceGroup }
        { name: 'APIM_SERVICE_NAME', value: apimServiceName }
        { name: 'CLUSTER_NAME', value: clusterName }
        { name: 'OWNER_ID', value: ownerId }
        { name: 'SYNC_POLICY', value: syncPolicy }
        { name: 'AKS_API_SERVER', value: 'https://${aks.properties.fqdn}:443' }
        { name: 'AKS_CA_CERT', value: aksCaCertificate }
        { name: 'AKS_RESOURCE_ID', value: aksId }
        { name: 'EVENT_SOURCES', value: watcherTopic.id }
        { name: 'ROUTE_KINDS', value: routeKinds }
        { name: 'GATEWAY_ALLOWLIST', value: gatewayAllowList }
        { name: 'APIS_ENABLED', value: string(enableApis) }
        { name: 'CREATE_PRODUCTS', value: string(createProducts) }
        { name: 'ALLOWLIST_ENABLED', value: string(enableAllowLists) }
        { name: 'CLIENT_CERTIFICATE_SOURCE', value: clientCertificateSource }
        { name: 'KEYVAULT_CERT_SECRET_ID', value: keyVaultCertificateSecretId }
        { name: 'CA_KEYVAULT_URL', value: empty(caKeyVaultName) ? '' : 'https://${caKeyVaultName}${environment().suffixes.keyvaultDns}/' }
        { name: 'PERIODIC_RESYNC_SCHEDULE', value: '0 */15 * * * *' }
        { name: 'ROTATION_SCHEDULE', value: '0 5 * * * *' }
      ]
    }
  }
  dependsOn: [appStorageRole, packageContainer]
}

// APIM: a custom role with exactly the actions the enabled features call (shared/core/permissions.py), on the
// one instance; and the Event Grid system topics of APIM and its resource group.
module apimAccess 'modules/apim-access.bicep' = {
  name: 'apim-access'
  scope: resourceGroup(apimResourceGroup)
  params: {
    apimServiceName: apimServiceName
    principalId: appIdentity.properties.principalId
    ownerId: ownerId
    enableApis: enableApis
    createProducts: createProducts
    enableMtls: withMtls
    functionId: '${app.id}/functions/on_event'
    deadLetterStorageId: storage.id
    deadLetterContainer: deadLetterContainer
    location: location
  }
}

module aksEvents 'modules/aks-events.bicep' = {
  name: 'aks-events'
  scope: resourceGroup(aksResourceGroup)
  params: {
    aksClusterName: aksClusterName
    functionId: '${app.id}/functions/on_event'
    deadLetterStorageId: storage.id
    deadLetterContainer: deadLetterContainer
    location: location
  }
}

// Event Grid writes dead letters with each topic's own identity.
resource deadLetterWriters 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for topic in [apimAccess.outputs.apimTopicPrincipalId, apimAccess.outputs.armTopicPrincipalId, aksEvents.outputs.topicPrincipalId, watcherTopic.identity.principalId]: {
    name: guid(storage.id, topic, blobDataContributor)
    scope: storage
    properties: {
      principalId: topic
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
    }
  }
]

// The watcher publishes Service changes here (CloudEvents 1.0), with its own identity and nothing else.
resource watcherTopic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193: the watcher in AKS publishes over the public endpoint unless the cluster's VNet has a private endpoint; local auth is off, only its identity may send
  name: '${namePrefix}-watcher-${suffix}'
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}

resource watcherSends 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(watcherTopic.id, watcherIdentity.id, eventGridDataSender)
  scope: watcherTopic
  properties: {
    principalId: watcherIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
  }
}

resource watcherSubscription 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {
  parent: watcherTopic
  name: 'to-on-event'
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    destination: {
      endpointType: 'AzureFunction'
      properties: { resourceId: '${app.id}/functions/on_event', maxEventsPerBatch: 1 }
    }
    filter: {
      includedEventTypes: ['io.apim-sync.service.changed', 'io.apim-sync.cluster.resync', 'io.apim-sync.trust.changed']
    }
    retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: { resourceId: storage.id, blobContainerName: deadLetterContainer }
      }
    }
  }
  dependsOn: [deadLetterWriters]
}

// The managed CA in Key Vault (CA_KEYVAULT_URL): secrets of that one vault.
module caVault 'modules/keyvault-access.bicep' = if (!empty(caKeyVaultName) && withMtls) {
  name: 'ca-keyvault-access'
  scope: resourceGroup(caKeyVaultResourceGroup)
  params: {
    keyVaultName: caKeyVaultName
    principalId: appIdentity.properties.principalId
    roleDefinitionId: keyVaultSecretsOfficer
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    insightsId: insights.id
    actionGroupId: actionGroupId
    eventSubscriptionTopics: [apimAccess.outputs.apimTopicId, apimAccess.outputs.armTopicId, aksEvents.outputs.topicId, watcherTopic.id]
    expiryWarningDays: (certificateValidityDays * certificateRenewPercent / 100) + 7
  }
}

output functionAppName string = app.name
output appIdentityPrincipalId string = appIdentity.properties.principalId
output appIdentityClientId string = appIdentity.properties.clientId
output watcherIdentityClientId string = watcherIdentity.properties.clientId
output watcherTopicEndpoint string = watcherTopic.properties.endpoint
