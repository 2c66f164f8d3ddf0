import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import ServiceLifecycle

/// Turns system events into notifications: reads the transactional outbox the cases and payments
/// stores write in the same transaction as each case transition and payment outcome, renders the
/// applicant's message from the system templates, queues the webhooks (`case.transition`,
/// `payment.*`, `refund.*`), and marks the events consumed — all in one transaction, so each
/// event becomes exactly one message even across crashes.
///
/// Case and payment writes wake it at once; a timed pass catches anything a wake-up missed.
public final class SystemEventNotifier: Service, Sendable {
  let store: any NotificationStore
  let publisher: NotificationPublisher
  let clock: any WallClock
  let logger: Logger
  let interval: Duration
  let wake = WakeSignal()
  /// Passes run only while this node holds the job's lease.
  let gate: JobGate

  static let batchSize = 200

  init(
    store: any NotificationStore, publisher: NotificationPublisher, clock: any WallClock, logger: Logger, interval: Duration = .seconds(5),
    gate: JobGate = .always
  ) {
    self.gate = gate
    self.store = store
    self.publisher = publisher
    self.clock = clock
    self.logger = logger
    self.interval = interval
  }

  /// Called after a case transition or a payment outcome commits.
  func kick() { wake.kick() }

  public func run() async throws {
    await cancelWhenGracefulShutdown {
      while !Task.isCancelled {
        do {
          while self.gate.isOpen, try await self.runOnce() >= Self.batchSize {}
        } catch is CancellationError {
          return
        } catch {
          self.logger.error("system event notifications failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
        }
        await self.wake.wait(upTo: self.interval)
      }
    }
  }

  /// One batch of each topic; returns how many events were consumed.
  @discardableResult
  public func runOnce() async throws -> Int {
    let cases = try await store.pendingEvents(topic: "case.transition", limit: Self.batchSize)
    let payments = try await store.pendingEvents(topic: PaymentEventMessages.topic, limit: Self.batchSize)
    guard !cases.isEmpty || !payments.isEmpty else { return 0 }
    let now = clock.now()
    var templates: [String: StoredTemplate] = [:]
    var publications: [NewPublication] = []
    var webhooks: [WebhookEvent] = []
    /// The applicant's message from a system template, if the event has one.
    func message(
      _ event: OutboxEvent, _ m: (template: String, values: [String: String])?, category: String, priority: MessagePriority,
      data: [String: String], key: String
    ) async throws {
      guard let applicant = event.payload["applicant_id"], let (name, values) = m else { return }
      if templates[name] == nil { templates[name] = try await store.template(name: name, version: nil) }
      guard let rendered = render(templates[name], name: name, values: values) else { return }
      publications.append(NewPublication(
        id: ULID.make(at: now), audience: .account(applicant),
        content: MessageContent(
          title: rendered.title, body: rendered.body, category: category, priority: priority, data: data, template: name,
          templateVersion: rendered.version),
        ttl: nil, sendAt: nil, publisherID: nil, idempotencyKey: key))
    }
    for event in cases {
      let p = event.payload
      webhooks.append(WebhookEvent.make(
        id: "evt_case_\(event.id)", type: WebhookEvent.caseTransition, createdAt: event.createdAt,
        data: Self.webhookData(p, fields: Self.webhookFields)))
      let m = Self.message(for: p)
      try await message(
        event, m, category: "case", priority: m?.0 == SystemTemplates.caseCorrectionRequired ? .high : .normal,
        data: ["case_id": event.aggregateID, "tracking_code": p["tracking_code"] ?? "", "state": p["state"] ?? ""],
        key: "case-event-\(event.id)")
    }
    for event in payments {
      let p = event.payload
      webhooks.append(WebhookEvent.make(
        id: "evt_pay_\(event.id)", type: p["type"] ?? "", createdAt: event.createdAt,
        data: Self.webhookData(p, fields: PaymentEventMessages.webhookFields)))
      try await message(
        event, PaymentEventMessages.message(for: p), category: "payment", priority: .normal,
        data: ["payment_id": p["payment_id"] ?? "", "case_id": p["case_id"] ?? "", "type": p["type"] ?? ""],
        key: "payment-event-\(event.id)")
    }
    let outcomes = try await store.consumeEvents(
      ids: (cases + payments).map(\.id), publications: publications, webhookEvents: webhooks, now: now, limits: publisher.limits)
    for outcome in outcomes { publisher.deliverLive(outcome) }
    if outcomes.isEmpty && !webhooks.isEmpty { publisher.deliveriesQueued() }
    return max(cases.count, payments.count)
  }

  /// Case fields a third-party platform receives (no personal data: no applicant, no reasons).
  static let webhookFields: Set<String> = ["case_id", "tracking_code", "item_code", "event", "state", "department"]

  /// The event's `fields`, with its time in ISO 8601 like the envelope's `created_at`.
  static func webhookData(_ payload: [String: String], fields: Set<String>) -> [String: String] {
    var data = payload.filter { fields.contains($0.key) }
    if let millis = payload["at"].flatMap(Int64.init) {
      data["at"] = Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date(timeIntervalSince1970: Double(millis) / 1000))
    }
    return data
  }

  /// The template and its values for an event the applicant should hear about; nil for the
  /// applicant's own actions.
  static func message(for p: [String: String]) -> (String, [String: String])? {
    let base = ["item_name": p["item_name"] ?? p["item_code"] ?? "", "tracking_code": p["tracking_code"] ?? ""]
    let reason = (p["reason"] ?? "").isEmpty ? "（未说明）" : p["reason"] ?? ""
    switch CaseEvent(rawValue: p["event"] ?? "") {
    case .receive: return (SystemTemplates.caseReceived, base)
    case .requestCorrection:
      let items = (p["missing_items"] ?? "").split(separator: "\n").enumerated().map { "\($0.offset + 1). \($0.element)" }
      return (SystemTemplates.caseCorrectionRequired, base.merging(["missing_items": items.joined(separator: "\n")]) { $1 })
    case .accept, .deemAccepted: return (SystemTemplates.caseAccepted, base)
    case .reject: return (SystemTemplates.caseRejected, base.merging(["reason": reason]) { $1 })
    case .approve: return (SystemTemplates.caseApproved, base)
    case .deny: return (SystemTemplates.caseDenied, base.merging(["reason": reason]) { $1 })
    case .dispatchResult: return (SystemTemplates.caseResultDispatched, base)
    case .startReview, .suspend, .resume, .extend, .complete, .reopen:
      return (SystemTemplates.caseStatusChanged, base.merging(["status": statusLabels[p["state"] ?? ""] ?? p["state"] ?? ""]) { $1 })
    case .submit, .supplyCorrection, .confirmDelivery, .withdraw, .advanceStep, .none:
      return nil
    }
  }

  static let statusLabels: [String: String] = [
    "accepted": "已受理", "under_review": "审查中", "suspended": "特别程序（暂停计时）", "approved": "准予许可", "denied": "不予许可",
    "completed": "已办结", "result_delivering": "结果送达中", "result_delivered": "结果已送达",
  ]

  private func render(_ stored: StoredTemplate?, name: String, values: [String: String]) -> (title: String, body: String, version: Int)? {
    if let stored, let text = try? stored.template.render(values) {
      return (text.title, text.body, stored.template.version)
    }
    // The stored template is missing or unusable: fall back to the built-in wording.
    logger.warning("system template unusable; using the built-in text", metadata: ["template": "\(name)"])
    guard let builtIn = SystemTemplates.builtIn(name),
          let template = try? MessageTemplate(name: name, version: 1, title: builtIn.title, body: builtIn.body),
          let text = try? template.render(values)
    else { return nil }
    return (text.title, text.body, 0)
  }
}
