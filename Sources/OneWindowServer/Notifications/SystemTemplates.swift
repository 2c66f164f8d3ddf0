import OneWindowCore
import OneWindowStore

/// The templates system events are rendered with. Seeded as version 1 at start when missing;
/// administrators may publish new versions (with the same placeholders) to change the wording.
enum SystemTemplates {
  static let loginCode = "login.code"
  static let caseReceived = "case.received"
  static let caseCorrectionRequired = "case.correction_required"
  static let caseAccepted = "case.accepted"
  static let caseRejected = "case.rejected"
  static let caseApproved = "case.approved"
  static let caseDenied = "case.denied"
  static let caseResultDispatched = "case.result_dispatched"
  static let caseStatusChanged = "case.status_changed"
  static let deadlineReminder = "case.deadline_reminder"
  static let paymentSucceeded = "payment.succeeded"
  static let paymentFailed = "payment.failed"
  static let refundSucceeded = "payment.refunded"

  static let all: [NewTemplate] = [
    NewTemplate(
      name: loginCode, title: "登录验证码",
      body: "【一网通办】您的登录验证码是 ((code))，5 分钟内有效。请勿泄露给他人。", category: "security", system: true),
    NewTemplate(
      name: caseReceived, title: "已收到您的申请",
      body: "您的「((item_name))」申请已提交，查询码 ((tracking_code))。部门将在 5 个工作日内决定是否受理。",
      category: "case", system: true),
    NewTemplate(
      name: caseCorrectionRequired, title: "请补齐补正材料",
      body: "您的「((item_name))」申请（查询码 ((tracking_code))）材料不齐，请一次性补齐以下全部材料：\n((missing_items))",
      category: "case", system: true),
    NewTemplate(
      name: caseAccepted, title: "申请已受理",
      body: "您的「((item_name))」申请已受理（查询码 ((tracking_code))），请留意办理进度。", category: "case", system: true),
    NewTemplate(
      name: caseRejected, title: "申请不予受理",
      body: "您的「((item_name))」申请（查询码 ((tracking_code))）不予受理。理由：((reason))", category: "case", system: true),
    NewTemplate(
      name: caseApproved, title: "审批通过，结果已就绪",
      body: "您的「((item_name))」申请已准予许可（查询码 ((tracking_code))）。已签发的电子证照可在「我的证照」中查看。",
      category: "case", system: true),
    NewTemplate(
      name: caseDenied, title: "不予许可",
      body: "您的「((item_name))」申请（查询码 ((tracking_code))）不予许可。理由：((reason))", category: "case", system: true),
    NewTemplate(
      name: caseResultDispatched, title: "办理结果已发出",
      body: "您的「((item_name))」办理结果已发出（查询码 ((tracking_code))），请注意查收。", category: "case", system: true),
    NewTemplate(
      name: caseStatusChanged, title: "办件进度更新",
      body: "您的「((item_name))」申请（查询码 ((tracking_code))）进度更新：((status))。", category: "case", system: true),
    NewTemplate(
      name: deadlineReminder, title: "办件即将到期",
      body: "办件 ((tracking_code))（((item_name))）的((deadline))将于 ((due_date)) 到期，剩余 ((days_left)) 个工作日。",
      category: "reminder", system: true),
    NewTemplate(
      name: paymentSucceeded, title: "缴费成功",
      body: "您已成功缴纳「((item_name))」费用 ((amount)) 元（查询码 ((tracking_code))），电子票据号 ((receipt_number))。",
      category: "payment", system: true),
    NewTemplate(
      name: paymentFailed, title: "缴费未成功",
      body: "您的「((item_name))」缴费（查询码 ((tracking_code))）未成功（((code))），可重新发起支付。",
      category: "payment", system: true),
    NewTemplate(
      name: refundSucceeded, title: "退款已受理",
      body: "您的「((item_name))」费用已退款 ((amount)) 元（查询码 ((tracking_code))），将原路退回。",
      category: "payment", system: true),
  ]

  /// The built-in text of a system template, used when the stored one cannot be read.
  static func builtIn(_ name: String) -> NewTemplate? { all.first { $0.name == name } }
}
