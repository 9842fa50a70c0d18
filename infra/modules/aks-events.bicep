// In the AKS cluster's resource group: its Event Grid system topic, subscribed to the app's on_event function
// for the node-pool events after which every Service's address is looked at again.

param aksClusterName string
param functionId string
param deadLetterStorageId string
param deadLetterContainer string
param location string

resource aks 'Microsoft.ContainerService/managedClusters@2024-09-01' existing = {
  name: aksClusterName
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: '${aksClusterName}-events'
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    source: aks.id
    topicType: 'Microsoft.ContainerService.ManagedClusters'
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: 'aks-apim-sync'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: { resourceId: functionId, maxEventsPerBatch: 1 }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.ContainerService.NodePoolRollingSucceeded'
        'Microsoft.ContainerService.NodePoolRollingFailed'
      ]
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
}

output topicId string = topic.id
output topicPrincipalId string = topic.identity.principalId
