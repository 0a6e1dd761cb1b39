// Step 2 of the deployment: subscribes the RecordUploaded blob trigger (source EventGrid, the
// only blob trigger Flex Consumption runs) to BlobCreated events of the records container.
//
// Its webhook carries the blobs_extension system key, which the Functions host creates when it
// first starts the published code: deploy this (main.bicep with deployEventSubscription=true)
// only after `scripts/publish <app>`. Event Grid validates the webhook when the subscription is
// created, which only a running app with that function answers.

@description('The function app (already published).')
param functionAppName string

@description('The records account\'s Event Grid system topic.')
param systemTopicName string

@description('The records container the trigger watches.')
param containerName string

@description('The blob-triggered function (folder name under functions/).')
param functionName string

@description('Event subscription name.')
param subscriptionName string = 'record-uploaded'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

// listKeys is evaluated only when this module is deployed, so step 1 never asks for a key that
// does not exist yet.
var blobsExtensionKey = listKeys('${functionApp.id}/host/default', '2024-04-01').systemKeys.blobs_extension

// Not named `subscription`: that symbol would shadow the built-in subscription() function.
resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: subscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${containerName}/'
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output subscriptionName string = blobCreated.name
