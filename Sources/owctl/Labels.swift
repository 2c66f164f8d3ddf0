import OneWindowAPI

// Friendly names for the API's enums.

extension Onewindow_V1_ItemCategory {
  var label: String {
    switch self {
    case .administrativeLicense: "行政许可"
    case .administrativePayment: "行政给付"
    case .administrativeConfirmation: "行政确认"
    case .publicService: "公共服务"
    case .other: "其他"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "category \(n)"
    }
  }
}

extension Onewindow_V1_ServiceTarget {
  var label: String {
    switch self {
    case .citizen: "自然人"
    case .enterprise: "法人"
    case .both: "自然人、法人"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "target \(n)"
    }
  }
}

extension Onewindow_V1_ItemStatus {
  var label: String {
    switch self {
    case .draft: "draft"
    case .published: "published"
    case .withdrawn: "withdrawn"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "status \(n)"
    }
  }
}

extension Onewindow_V1_Role {
  var label: String {
    switch self {
    case .citizen: "citizen"
    case .enterprise: "enterprise"
    case .caseworker: "caseworker"
    case .admin: "admin"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "role \(n)"
    }
  }
}

extension Onewindow_V1_MaterialForm {
  var label: String {
    switch self {
    case .original: "原件"
    case .copy: "复印件"
    case .electronic: "电子材料"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "form \(n)"
    }
  }
}

extension Onewindow_V1_FormFieldType {
  var label: String {
    switch self {
    case .text: "text"
    case .integer: "integer"
    case .decimal: "decimal"
    case .boolean: "boolean"
    case .date: "date"
    case .phone: "phone"
    case .idNumber: "id-number"
    case .choice: "choice"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "type \(n)"
    }
  }
}

enum Levels {
  /// 网办深度 1–4.
  static func onlineDepth(_ depth: Int32) -> String {
    switch depth {
    case 1: "1 (信息公开)"
    case 2: "2 (表格下载)"
    case 3: "3 (网上预审)"
    case 4: "4 (全程网办)"
    default: "\(depth)"
    }
  }

  /// 到现场次数 0–5.
  static func visits(_ visits: Int32) -> String {
    switch visits {
    case 0: "0 (不见面审批)"
    case 1: "1 (最多跑一次)"
    default: "\(visits)"
    }
  }

  static func trust(_ level: Int32) -> String {
    switch level {
    case 2: "2 (self-declared)"
    case 3: "3 (verified against the registry)"
    default: "\(level)"
    }
  }
}

// MARK: - Cases

extension Onewindow_V1_CaseState {
  /// The API name, e.g. `pending_acceptance`.
  var name: String {
    switch self {
    case .draft: "draft"
    case .submitted: "submitted"
    case .pendingAcceptance: "pending_acceptance"
    case .correctionRequired: "correction_required"
    case .accepted: "accepted"
    case .rejected: "rejected"
    case .underReview: "under_review"
    case .suspended: "suspended"
    case .approved: "approved"
    case .denied: "denied"
    case .completed: "completed"
    case .resultDelivering: "result_delivering"
    case .resultDelivered: "result_delivered"
    case .withdrawn: "withdrawn"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "state_\(n)"
    }
  }

  var chinese: String {
    switch self {
    case .draft: "草稿"
    case .submitted: "已提交"
    case .pendingAcceptance: "待受理"
    case .correctionRequired: "待补齐补正"
    case .accepted: "已受理"
    case .rejected: "不予受理"
    case .underReview: "审查中"
    case .suspended: "特别程序(暂停)"
    case .approved: "准予许可"
    case .denied: "不予许可"
    case .completed: "办结"
    case .resultDelivering: "送达中"
    case .resultDelivered: "已送达"
    case .withdrawn: "已撤回"
    case .unspecified, .UNRECOGNIZED: ""
    }
  }

  /// `已受理 (accepted)`.
  var label: String { chinese.isEmpty ? name : "\(chinese) (\(name))" }
}

extension Onewindow_V1_CaseEvent {
  /// The API name, e.g. `request_correction`.
  var name: String {
    switch self {
    case .submit: "submit"
    case .receive: "receive"
    case .requestCorrection: "request_correction"
    case .supplyCorrection: "supply_correction"
    case .accept: "accept"
    case .deemAccepted: "deem_accepted"
    case .reject: "reject"
    case .startReview: "start_review"
    case .suspend: "suspend"
    case .resume: "resume"
    case .advanceStep: "advance_step"
    case .approve: "approve"
    case .deny: "deny"
    case .complete: "complete"
    case .dispatchResult: "dispatch_result"
    case .confirmDelivery: "confirm_delivery"
    case .withdraw: "withdraw"
    case .reopen: "reopen"
    case .extend: "extend"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "event_\(n)"
    }
  }

  var chinese: String {
    switch self {
    case .submit: "提交申请"
    case .receive: "接收"
    case .requestCorrection: "一次性告知补正"
    case .supplyCorrection: "补齐补正材料"
    case .accept: "受理"
    case .deemAccepted: "视为受理"
    case .reject: "不予受理"
    case .startReview: "开始审查"
    case .suspend: "特别程序(暂停)"
    case .resume: "恢复审查"
    case .advanceStep: "转下一环节"
    case .approve: "准予许可"
    case .deny: "不予许可"
    case .complete: "办结"
    case .dispatchResult: "寄递送达"
    case .confirmDelivery: "确认送达"
    case .withdraw: "撤回申请"
    case .reopen: "重新审查"
    case .extend: "延长期限"
    case .unspecified, .UNRECOGNIZED: ""
    }
  }

  /// `受理 (accept)`.
  var label: String { chinese.isEmpty ? name : "\(chinese) (\(name))" }

  /// The owctl command that causes this event, with `{}` where the case goes (for hints).
  var command: String {
    switch self {
    case .requestCorrection: "worker correct {} --missing ITEM"
    case .supplyCorrection: "case supply {} --material NAME=MATERIAL-ID"
    case .accept: "worker accept {}"
    case .reject: "worker reject {} --reason TEXT"
    case .startReview: "worker start-review {}"
    case .suspend: "worker suspend {} --reason TEXT"
    case .resume: "worker resume {}"
    case .advanceStep: "worker advance {}"
    case .approve: "worker approve {}"
    case .deny: "worker deny {} --reason TEXT"
    case .complete: "worker complete {}"
    case .dispatchResult: "worker deliver {} --courier TRACKING-NO"
    case .confirmDelivery: "case confirm {}"
    case .withdraw: "case withdraw {}"
    case .reopen: "worker reopen {} --reason TEXT"
    case .extend: "worker extend {} --reason TEXT --approver NAME"
    case .submit, .receive, .deemAccepted, .unspecified, .UNRECOGNIZED: ""
    }
  }
}

extension Onewindow_V1_CertificateStatus {
  var label: String {
    switch self {
    case .valid: "有效 (valid)"
    case .revoked: "已注销 (revoked)"
    case .expired: "已过期 (expired)"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "status \(n)"
    }
  }
}

extension Onewindow_V1_VerificationResult {
  var label: String {
    switch self {
    case .valid: "VALID"
    case .revoked: "REVOKED"
    case .expired: "EXPIRED"
    case .badSignature: "BAD_SIGNATURE"
    case .notFound: "NOT_FOUND"
    case .unknownKey: "UNKNOWN_KEY"
    case .malformed: "MALFORMED"
    case .unspecified: "UNSPECIFIED"
    case .UNRECOGNIZED(let n): "RESULT_\(n)"
    }
  }
}

extension Onewindow_V1_EvaluationStatus {
  var label: String {
    switch self {
    case .closed: "已评价 (closed)"
    case .rectifying: "待整改 (rectifying)"
    case .rectified: "已整改 (rectified)"
    case .appealed: "申诉中 (appealed)"
    case .invalidated: "已作废 (invalidated)"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "status \(n)"
    }
  }
}

extension Levels {
  /// 好差评 level 1–5.
  static func rating(_ level: Int32) -> String {
    switch level {
    case 1: "1 (非常不满意)"
    case 2: "2 (不满意)"
    case 3: "3 (基本满意)"
    case 4: "4 (满意)"
    case 5: "5 (非常满意)"
    default: "\(level)"
    }
  }
}
