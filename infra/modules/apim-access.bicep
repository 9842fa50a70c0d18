// In the APIM instance's resource group: the custom role (exactly the actions the enabled features call, from
// shared/core/permissions.py; tests/deploy holds each list equal to that table), its assignment on the one
// instance, and the Event Grid system topics of the instance and of its resource group (ARM events, filtered to
// the instance), each subscribed to the app's on_event function.

param apimServiceName string
param principalId string
param ownerId string
param enableApis bool
param createProducts bool
param enableMtls bool
param functionId string
param deadLetterStorageId string
param deadLetterContainer string
param location string

resource apim 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimServiceName
}

// Feature.BACKENDS and Feature.ALLOWLISTS
var backendActions = [
  'Microsoft.ApiManagement/service/backends/delete'
  'Microsoft.ApiManagement/service/backends/read'
  'Microsoft.ApiManagement/service/backends/write'
  'Microsoft.ApiManagement/service/read'
]

// Feature.ROTATION
var rotationActions = [
  'Microsoft.ApiManagement/service/certificates/delete'
  'Microsoft.ApiManagement/service/certificates/read'
  'Microsoft.ApiManagement/service/certificates/write'
]

// Feature.APIS
var apiActions = [
  'Microsoft.ApiManagement/service/apis/delete'
  'Microsoft.ApiManagement/service/apis/operations/delete'
  'Microsoft.ApiManagement/service/apis/operations/policies/read'
  'Microsoft.ApiManagement/service/apis/operations/policies/write'
  'Microsoft.ApiManagement/service/apis/operations/read'
  'Microsoft.ApiManagement/service/apis/operations/write'
  'Microsoft.ApiManagement/service/apis/policies/read'
  'Microsoft.ApiManagement/service/apis/policies/write'
  'Microsoft.ApiManagement/service/apis/read'
  'Microsoft.ApiManagement/service/apis/tags/read'
  'Microsoft.ApiManagement/service/apis/tags/write'
  'Microsoft.ApiManagement/service/apis/write'
  'Microsoft.ApiManagement/service/apisByTags/read'
  'Microsoft.ApiManagement/service/products/apis/delete'
  'Microsoft.ApiManagement/service/products/apis/read'
  'Microsoft.ApiManagement/service/products/apis/write'
  'Microsoft.ApiManagement/service/products/read'
  'Microsoft.ApiManagement/service/tags/write'
  'Microsoft.ApiManagement/service/tenant/operationResults/read'
]

// Feature.CREATE_PRODUCTS
var productCreateActions = [
  'Microsoft.ApiManagement/service/products/write'
]

// Feature.PUBLIC_AUTH (doctor checks that the Option 1 named value exists)
var namedValueActions = [
  'Microsoft.ApiManagement/service/namedValues/read'
]

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(apim.id, ownerId, 'aks-apim-sync')
  properties: {
    roleName: 'aks-apim-sync ${ownerId} on ${apimServiceName}'
    description: 'What aks-apim-sync calls on this APIM instance, and nothing more.'
    type: 'CustomRole'
    assignableScopes: [apim.id]
    permissions: [
      {
        actions: concat(backendActions, namedValueActions, enableMtls ? rotationActions : [], enableApis ? apiActions : [], enableApis && createProducts ? productCreateActions : [])
        notActions: []
      }
    ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(apim.id, principalId, role.id)
  scope: apim
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: role.id
  }
}

var delivery = {
  destination: {
    endpointType: 'AzureFunction'
    properties: { resourceId: functionId, maxEventsPerBatch: 1 }
  }
  retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
  deadLetterWithResourceIdentity: {
    identity: { type: 'SystemAssigned' }
    deadLetterDestination: {
      endpointType: 'StorageBlob'
      properties: { resourceId: deadLetterStorageId, blobContainerName: deadLetterContainer }
    }
  }
}

resource apimTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: '${apimServiceName}-events'
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    source: apim.id
    topicType: 'Microsoft.ApiManagement.Service'
  }
}

// The event types shared/events/routing.py acts on (an API changed by hand or by another tool).
resource apimSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: apimTopic
  name: 'aks-apim-sync'
  properties: union(delivery, {
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.ApiManagement.APICreated'
        'Microsoft.ApiManagement.APIUpdated'
        'Microsoft.ApiManagement.APIDeleted'
        'Microsoft.ApiManagement.APIReleaseCreated'
        'Microsoft.ApiManagement.APIReleaseUpdated'
        'Microsoft.ApiManagement.APIReleaseDeleted'
      ]
    }
  })
}

resource armTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: '${apimServiceName}-arm-events'
  location: 'global'
  identity: { type: 'SystemAssigned' }
  properties: {
    source: resourceGroup().id
    topicType: 'Microsoft.Resources.ResourceGroups'
  }
}

// ARM writes to the instance (its addresses may have changed) and to its backends (a hand edit to put back).
resource armSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: armTopic
  name: 'aks-apim-sync'
  properties: union(delivery, {
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      subjectBeginsWith: apim.id
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceDeleteSuccess'
        'Microsoft.Resources.ResourceActionSuccess'
      ]
    }
  })
}

output apimTopicId string = apimTopic.id
output apimTopicPrincipalId string = apimTopic.identity.principalId
output armTopicId string = armTopic.id
output armTopicPrincipalId string = armTopic.identity.principalId
