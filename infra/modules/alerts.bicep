// Alert rules on what the app reports (shared/telemetry.py: metric names and attributes; tests/deploy holds the
// names used here equal to the ones the app emits) and on Event Grid's dead letters.

param location string
param insightsId string
param actionGroupId string
param eventSubscriptionTopics array
param expiryWarningDays int

var actions = empty(actionGroupId) ? [] : [actionGroupId]

var logAlerts = [
  {
    name: 'rotation-failed'
    description: 'A certificate rotation run failed: APIM may keep presenting a certificate that is about to expire.'
    severity: 1
    query: 'AppMetrics | where Name == "aks_apim_sync.runs" and tostring(Properties["run.kind"]) == "rotation" and tostring(Properties["run.outcome"]) == "failed" | summarize failed = sum(Sum)'
    threshold: 0
    window: 'PT1H'
  }
  {
    name: 'certificate-expiring'
    description: 'The client certificate APIM presents, or the CA, expires within the renewal window plus a week.'
    severity: 1
    query: 'AppMetrics | where Name == "aks_apim_sync.certificate.days_left" | summarize days = min(Min) | where days < ${expiryWarningDays} | project failed = 1'
    threshold: 0
    window: 'PT6H'
  }
  {
    name: 'sync-failing'
    description: 'Three or more sync runs failed within an hour: Services are not reaching APIM.'
    severity: 2
    query: 'AppMetrics | where Name == "aks_apim_sync.runs" and tostring(Properties["run.kind"]) == "sync" and tostring(Properties["run.outcome"]) == "failed" | summarize failed = sum(Sum)'
    threshold: 2
    window: 'PT1H'
  }
]

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for alert in logAlerts: {
    name: 'aks-apim-sync-${alert.name}'
    location: location
    properties: {
      description: alert.description
      severity: alert.severity
      enabled: true
      scopes: [insightsId]
      evaluationFrequency: 'PT15M'
      windowSize: alert.window
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: 'Total'
            metricMeasureColumn: 'failed'
            operator: 'GreaterThan'
            threshold: alert.threshold
            failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
          }
        ]
      }
      actions: { actionGroups: actions }
    }
  }
]

resource deadLettered 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for (topic, i) in eventSubscriptionTopics: {
    name: 'aks-apim-sync-dead-lettered-${i}'
    location: 'global'
    properties: {
      description: 'Event Grid dead-lettered events meant for aks-apim-sync (see the event-dead-letters container).'
      severity: 2
      enabled: true
      scopes: [topic]
      evaluationFrequency: 'PT15M'
      windowSize: 'PT1H'
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            name: 'dead-lettered'
            criterionType: 'StaticThresholdCriterion'
            metricName: 'DeadLetteredCount'
            operator: 'GreaterThan'
            threshold: 0
            timeAggregation: 'Total'
          }
        ]
      }
      actions: [for group in actions: { actionGroupId: group }]
    }
  }
]
