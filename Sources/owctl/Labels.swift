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
