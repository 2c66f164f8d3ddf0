import Foundation
import OneWindowCore
import OneWindowStore

/// The one way a message gets published — by an administrator's RPC, by the scheduler, or by a
/// system event: render the template, commit through the store, then push the committed
/// messages to live streams and wake the outbound dispatcher.
struct NotificationPublisher: Sendable {
  let store: any NotificationStore
  let hub: NotificationHub
  let limits: InboxLimits
  /// Wakes the webhook dispatcher (deliveries may have been queued).
  let deliveriesQueued: @Sendable () -> Void
  /// Wakes the scheduler (a publication was scheduled).
  let scheduled: @Sendable () -> Void

  /// A template rendered with its personalisation.
  struct Rendered: Sendable {
    var template: StoredTemplate
    var title: String
    var body: String
  }

  /// INVALID_ARGUMENT names every missing or unknown placeholder; NOT_FOUND for an unknown
  /// template or version.
  func render(template name: String, version: Int?, personalisation: [String: String]) async throws -> Rendered {
    guard let stored = try await store.template(name: name, version: version) else {
      throw StoreError.notFound(version.map { "template '\(name)' version \($0)" } ?? "template '\(name)'")
    }
    let (title, body) = try stored.template.render(personalisation)
    return Rendered(template: stored, title: title, body: body)
  }

  func publish(_ publication: NewPublication, now: Date) async throws -> PublishOutcome {
    let outcome = try await store.publish(publication, now: now, limits: limits)
    if !outcome.replayed {
      if outcome.publication.status == .scheduled { scheduled() }
      deliverLive(outcome)
    }
    return outcome
  }

  /// Pushes what a commit wrote to the live streams (and wakes the dispatcher).
  func deliverLive(_ outcome: PublishOutcome) {
    hub.deliver(inbox: outcome.inboxMessages)
    if let topic = outcome.topicMessage { hub.deliver(topic: topic) }
    deliveriesQueued()
  }
}
