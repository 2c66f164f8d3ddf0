import OneWindowCore

/// What the payer is told about a payment outcome, and what platforms receive: the outbox rows
/// the payment store writes (topic `payment.event`) are consumed by `SystemEventNotifier`.
enum PaymentEventMessages {
  static let topic = "payment.event"

  /// Fields a third-party platform receives (no payer name or id).
  static let webhookFields: Set<String> = [
    "payment_id", "order_id", "case_id", "tracking_code", "department", "amount_fen", "state", "code", "receipt_number",
    "refund_id", "refund_fen",
  ]

  /// The system template and its values for the payer's message.
  static func message(for p: [String: String]) -> (template: String, values: [String: String])? {
    var values = ["item_name": p["item_name"] ?? "", "tracking_code": p["tracking_code"] ?? ""]
    switch p["type"] {
    case WebhookEvent.paymentSucceeded:
      values["amount"] = yuan(p["amount_fen"])
      values["receipt_number"] = p["receipt_number"] ?? ""
      return (SystemTemplates.paymentSucceeded, values)
    case WebhookEvent.paymentFailed:
      values["code"] = p["code"] ?? ""
      return (SystemTemplates.paymentFailed, values)
    case WebhookEvent.refundSucceeded:
      values["amount"] = yuan(p["refund_fen"])
      return (SystemTemplates.refundSucceeded, values)
    default:
      return nil
    }
  }

  static func yuan(_ fen: String?) -> String {
    guard let value = fen.flatMap(Int64.init), let amount = try? Fen(value) else { return "" }
    return amount.yuan
  }
}
