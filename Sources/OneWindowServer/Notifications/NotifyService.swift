import Foundation
import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Administrators: publishing (direct, segment, topic; now or scheduled), templates, topics and
/// the webhook endpoints of third-party platforms with their deliveries.
struct NotifyService: Onewindow_V1_NotifyService.SimpleServiceProtocol {
  let store: any Store
  let publisher: NotificationPublisher
  let secrets: SecretBox
  let settings: NotificationSettings
  let clock: any WallClock
  let logger: Logger

  func publish(request: Onewindow_V1_PublishRequest, context: ServerContext) async throws -> Onewindow_V1_PublishResponse {
    let p = try RequestContext.require([.admin])
    let now = clock.now()
    let key = try Self.idempotencyKey(request.idempotencyKey)
    let audience = try request.audience.domain()
    try Check.optionalText(request.template, field: "template", max: 64)
    guard !request.template.isEmpty else { throw ValidationError("template", "is required (a template name)") }
    guard request.templateVersion >= 0 else { throw ValidationError("template_version", "must not be negative") }
    guard request.ttlSeconds >= 0 else { throw ValidationError("ttl_seconds", "must not be negative (0: no expiry)") }
    try MessageContent.validateData(request.data)
    // A retry returns the original before anything else is checked: its send time may have
    // passed and its template may have changed since.
    if let original = try await store.notifications.publication(publisherID: p.accountID, idempotencyKey: key) {
      return .with {
        $0.publication = .init(original)
        $0.replayed = true
      }
    }
    let rendered = try await publisher.render(
      template: request.template, version: request.templateVersion == 0 ? nil : Int(request.templateVersion),
      personalisation: request.personalisation)
    let options = try MessageOptions(
      priority: MessagePriority(proto: request.priority),
      ttl: request.ttlSeconds == 0 ? nil : TimeInterval(request.ttlSeconds),
      collapseKey: request.collapseKey.isEmpty ? nil : request.collapseKey,
      sendAt: request.hasSendAt ? request.sendAt.date : nil,
      category: request.category.isEmpty ? rendered.template.category : request.category
    ).validated(now: now)
    let id = ULID.make(at: now)
    let content = MessageContent(
      title: rendered.title, body: rendered.body, category: options.category, priority: options.priority, data: request.data,
      template: rendered.template.template.name, templateVersion: rendered.template.template.version,
      collapseKey: options.collapseKey)
    let publication = NewPublication(
      id: id, audience: audience, content: content, ttl: options.ttl, sendAt: options.sendAt, publisherID: p.accountID,
      idempotencyKey: key,
      webhookEvent: WebhookEvent.make(
        id: "evt_\(id)", type: WebhookEvent.notificationPublished, createdAt: now,
        data: Self.webhookData(id: id, audience: audience, content: content)),
      audit: AuditEvent(p, action: "notification.publish", targetType: "publication", targetID: id, reason: Self.describe(audience)))
    let outcome = try await publisher.publish(publication, now: now)
    return .with {
      $0.publication = .init(outcome.publication)
      $0.replayed = outcome.replayed
    }
  }

  func cancelPublication(request: Onewindow_V1_CancelPublicationRequest, context: ServerContext) async throws -> Onewindow_V1_Publication {
    let p = try RequestContext.require([.admin])
    let id = try Self.id(request.id, field: "id")
    let cancelled = try await store.notifications.cancelPublication(
      id: id, now: clock.now(), audit: AuditEvent(p, action: "notification.cancel", targetType: "publication", targetID: id))
    return .init(cancelled)
  }

  func getPublication(request: Onewindow_V1_GetPublicationRequest, context: ServerContext) async throws -> Onewindow_V1_Publication {
    _ = try RequestContext.require([.admin])
    let id = try Self.id(request.id, field: "id")
    guard let publication = try await store.notifications.publication(id: id) else { throw StoreError.notFound("publication '\(id)'") }
    return .init(publication)
  }

  func listPublications(
    request: Onewindow_V1_ListPublicationsRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListPublicationsResponse {
    _ = try RequestContext.require([.admin])
    let limit = try NotificationPaging.pageSize(request.pageSize)
    let list = try await store.notifications.publications(
      before: try NotificationPaging.id(fromToken: request.pageToken), limit: limit + 1)
    return .with {
      $0.publications = list.prefix(limit).map(Onewindow_V1_Publication.init)
      if list.count > limit, let last = list.prefix(limit).last { $0.nextPageToken = NotificationPaging.idToken(last.id) }
    }
  }

  // MARK: - Templates

  func putTemplate(request: Onewindow_V1_PutTemplateRequest, context: ServerContext) async throws -> Onewindow_V1_NotificationTemplate {
    let p = try RequestContext.require([.admin])
    guard request.expectedVersion >= 0 else { throw ValidationError("expected_version", "must not be negative (0 for a new template)") }
    let category = request.category.isEmpty ? "general" : request.category
    _ = try MessageOptions(category: category).validated(now: clock.now())
    // Validate the text before touching the store (version 1 stands in for the next one).
    let candidate = try MessageTemplate(name: request.name, version: 1, title: request.title, body: request.body)
    let current = try await store.notifications.template(name: candidate.name, version: nil)
    if let current, current.system, current.template.placeholders != candidate.placeholders {
      // The server fills a system template's placeholders itself: they must stay the same.
      throw ValidationError(
        "body",
        "system template \(candidate.name) must use exactly the placeholders \(current.template.placeholders.map { "((\($0)))" }.joined(separator: ", "))")
    }
    let stored = try await store.notifications.putTemplate(
      NewTemplate(name: candidate.name, title: request.title, body: request.body, category: category, system: current?.system ?? false),
      expectedVersion: Int(request.expectedVersion), now: clock.now(),
      audit: AuditEvent(p, action: "notification.template", targetType: "template", targetID: candidate.name))
    return .init(stored)
  }

  func listTemplates(request: Onewindow_V1_ListTemplatesRequest, context: ServerContext) async throws -> Onewindow_V1_ListTemplatesResponse {
    _ = try RequestContext.require([.admin])
    let templates = try await store.notifications.latestTemplates()
    return .with { $0.templates = templates.map(Onewindow_V1_NotificationTemplate.init) }
  }

  func getTemplate(request: Onewindow_V1_GetTemplateRequest, context: ServerContext) async throws -> Onewindow_V1_NotificationTemplate {
    _ = try RequestContext.require([.admin])
    guard request.version >= 0 else { throw ValidationError("version", "must not be negative (0: the latest)") }
    try Check.optionalText(request.name, field: "name", max: 64)
    let version = request.version == 0 ? nil : Int(request.version)
    guard let t = try await store.notifications.template(name: request.name, version: version) else {
      throw StoreError.notFound(version.map { "template '\(request.name)' version \($0)" } ?? "template '\(request.name)'")
    }
    return .init(t)
  }

  // MARK: - Topics

  func createTopic(request: Onewindow_V1_CreateTopicRequest, context: ServerContext) async throws -> Onewindow_V1_Topic {
    let p = try RequestContext.require([.admin])
    let code = try TopicInfo.validateCode(request.code, field: "code")
    let topic = try await store.notifications.createTopic(
      code: code, title: request.title, description: request.description_p, now: clock.now(),
      audit: AuditEvent(p, action: "notification.topic", targetType: "topic", targetID: code))
    return .init(topic)
  }

  // MARK: - Webhooks

  func addWebhook(request: Onewindow_V1_AddWebhookRequest, context: ServerContext) async throws -> Onewindow_V1_AddWebhookResponse {
    let p = try RequestContext.require([.admin])
    let url = try NotificationSettings.validateWebhookURL(request.url, allowLoopbackHTTP: settings.allowLoopbackHTTPWebhooks)
    let types = try NotificationSettings.validateEventTypes(request.eventTypes)
    try Check.optionalText(request.description_p, field: "description", max: 200)
    let now = clock.now()
    let secret = SecretBox.newSecret()
    let id = "whe_" + ULID.make(at: now)
    let endpoint = try await store.notifications.addWebhook(
      WebhookEndpoint(
        id: id, url: url, eventTypes: types, enabled: true, description: request.description_p, createdAt: now,
        sealedSecret: try secrets.seal(secret)),
      audit: AuditEvent(p, action: "notification.webhook_add", targetType: "webhook", targetID: id, reason: types.joined(separator: ",")))
    return .with {
      $0.endpoint = .init(endpoint)
      $0.secret = secret
    }
  }

  func listWebhooks(request: Onewindow_V1_ListWebhooksRequest, context: ServerContext) async throws -> Onewindow_V1_ListWebhooksResponse {
    _ = try RequestContext.require([.admin])
    let endpoints = try await store.notifications.webhooks()
    return .with { $0.endpoints = endpoints.map(Onewindow_V1_WebhookEndpoint.init) }
  }

  func setWebhookEnabled(request: Onewindow_V1_SetWebhookEnabledRequest, context: ServerContext) async throws -> Onewindow_V1_WebhookEndpoint {
    let p = try RequestContext.require([.admin])
    let id = try Self.id(request.id, field: "id")
    let endpoint = try await store.notifications.setWebhookEnabled(
      id: id, enabled: request.enabled, now: clock.now(),
      audit: AuditEvent(p, action: request.enabled ? "notification.webhook_enable" : "notification.webhook_disable",
                        targetType: "webhook", targetID: id))
    return .init(endpoint)
  }

  func listDeliveries(request: Onewindow_V1_ListDeliveriesRequest, context: ServerContext) async throws -> Onewindow_V1_ListDeliveriesResponse {
    _ = try RequestContext.require([.admin])
    let limit = try NotificationPaging.pageSize(request.pageSize)
    let endpoint = request.endpointID.isEmpty ? nil : try Self.id(request.endpointID, field: "endpoint_id")
    let list = try await store.notifications.deliveries(
      endpointID: endpoint, status: try DeliveryStatus.filter(proto: request.status),
      before: try NotificationPaging.id(fromToken: request.pageToken), limit: limit + 1)
    return .with {
      $0.deliveries = list.prefix(limit).map(Onewindow_V1_Delivery.init)
      if list.count > limit, let last = list.prefix(limit).last { $0.nextPageToken = NotificationPaging.idToken(last.id) }
    }
  }

  func replayDelivery(request: Onewindow_V1_ReplayDeliveryRequest, context: ServerContext) async throws -> Onewindow_V1_Delivery {
    let p = try RequestContext.require([.admin])
    let id = try Self.id(request.id, field: "id")
    let now = clock.now()
    let replay = try await store.notifications.replayDelivery(
      id: id, newID: "dlv_" + ULID.make(at: now), now: now,
      audit: AuditEvent(p, action: "notification.delivery_replay", targetType: "delivery", targetID: id))
    publisher.deliveriesQueued()
    return .init(replay)
  }

  // MARK: - Helpers

  static func idempotencyKey(_ raw: String) throws(ValidationError) -> String {
    guard (1...64).contains(raw.count), raw.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.generalCategory != .control })
    else { throw ValidationError("idempotency_key", "is required: 1–64 printable ASCII characters, the same on every retry") }
    return raw
  }

  static func id(_ raw: String, field: String) throws(ValidationError) -> String {
    guard (1...64).contains(raw.utf8.count) else { throw ValidationError(field, "is required") }
    return raw
  }

  /// A publication's audience for the audit log, without personal data.
  static func describe(_ audience: Audience) -> String {
    switch audience {
    case .account: "account"
    case .topic(let t): "topic \(t)"
    case .segment(let s):
      "segment" + [s.role.map { " role=\($0.rawValue)" }, s.departmentCode.map { " department=\($0)" }, s.region.map { " region=\($0)" }]
        .compactMap { $0 }.joined()
    }
  }

  /// What third-party platforms learn of a publication: never the rendered text or the
  /// recipient (personal data stays inside).
  static func webhookData(id: String, audience: Audience, content: MessageContent) -> [String: String] {
    var data = ["publication_id": id, "template": content.template, "category": content.category]
    switch audience {
    case .account: data["audience"] = "account"
    case .segment: data["audience"] = "segment"
    case .topic(let t):
      data["audience"] = "topic"
      data["topic"] = t
    }
    return data
  }
}
