import ArgumentParser
import AsyncHTTPClient
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import SwiftProtobuf

// Payments (在线缴费, PaymentService): paying a case's fees through the provider's cashier,
// following orders and payments, refunds, e-receipts, fee waivers and reductions by
// caseworkers, and the administrators' reconciliation and ledger check. Money travels as
// integer fen and is shown in yuan with two decimals. docs/payments.md has the semantics.

extension Remote {
  var payments: Onewindow_V1_PaymentService.Client<HTTP2ClientTransport.Posix> { clients.payments }
}

// MARK: - pay

struct PayCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "pay",
    abstract: "Pay a case's fees (在线缴费): open the order, pay at the sandbox cashier, wait for the outcome.",
    discussion: """
      Gets the case's fee order (creating it the first time), shows what is due, starts a \
      payment for exactly that amount, authorises it at the cashier with --account, then asks \
      the server every 300 ms (up to 15 s) until the payment is finished, and prints the \
      outcome and the e-receipt number. Exits 0 when the payment succeeded (or nothing is due), \
      1 otherwise.
      Creating the order and the payment is idempotent by key: when an answer is lost, run the \
      command again with the --idempotency-key it printed and you get the same payment, never a \
      second one. An order has at most one unfinished payment; `owctl payments cancel PAY-ID` \
      abandons one that was started but not authorised.
      Sandbox test accounts: 6222000000000001 success, …0002 declined, …0003 no answer (stays \
      submitted until it expires), …0004 provider error, …0005 success after 3 s; any other \
      number is declined. With --json, prints the final Payment (or the FeeOrder when nothing \
      is due); progress notes go to stderr.
      """)

  @OptionGroup var global: GlobalOptions

  @Argument(help: "The case id or its tracking code.")
  var caseID: String

  @Option(help: ArgumentHelp("The (sandbox test) account to pay with.", valueName: "number"))
  var account: String = SandboxAccounts.success

  @Option(name: .customLong("idempotency-key"), help: ArgumentHelp(
    "1–64 printable ASCII characters (default: a new random key, printed).", valueName: "key"))
  var idempotencyKey: String?

  func validate() throws {
    if account.trimmingCharacters(in: .whitespaces).isEmpty { throw ArgumentParser.ValidationError("--account must not be empty.") }
    if let idempotencyKey { try IdempotencyKeyText.validate(idempotencyKey) }
  }

  func execute() async throws {
    let key = idempotencyKey ?? UUID().uuidString.lowercased()
    if idempotencyKey == nil {
      Console.error("idempotency key \(key)  (to retry safely, run: owctl pay \(caseID) --idempotency-key \(key))")
    }
    let json = global.json
    let caseID = self.caseID
    let account = self.account.trimmingCharacters(in: .whitespaces)
    let succeeded = try await global.connect { remote -> Bool in
      let order = try await Self.order(remote, caseID: caseID, key: key)
      switch order.state {
      case .paid, .waived:
        try remote.output.show(order) { OrderView.settled(order) }
        return true
      default:
        break
      }
      if !json { OrderView.due(order) }

      let payment: Onewindow_V1_Payment
      do {
        payment = try await SameKeyRetry.run("starting the payment") {
          try await remote.authorized { metadata in
            try await remote.payments.createPayment(.with {
              $0.orderID = order.id
              $0.amountFen = order.totalFen
              $0.idempotencyKey = key
            }, metadata: metadata, options: remote.call)
          }
        }
      } catch let error as RPCError where error.code == .failedPrecondition {
        guard let unfinished = PaymentText.paymentID(in: error.message) else { throw error }
        Console.error(ErrorReport.line(for: error, server: remote.server))
        let other = try? await remote.authorized { metadata in
          try await remote.payments.getPayment(.with { $0.paymentID = unfinished }, metadata: metadata, options: remote.call)
        }
        if let other, other.state == .submitted {
          let expiry = other.hasExpiresAt ? ", at the latest when it expires at \(Format.minute(other.expiresAt))" : ""
          Console.error(
            "hint: \(unfinished) was authorised at the provider and awaits its answer, so it can no longer be cancelled; "
              + "it finishes by itself\(expiry). Follow it with `owctl payments show \(unfinished)`")
        } else {
          Console.error(
            "hint: cancel it with `owctl payments cancel \(unfinished)` and run `owctl pay \(caseID)` again "
              + "(or pay it at its cashier: `owctl payments show \(unfinished)`)")
        }
        throw ExitCode(1)
      }
      if !json {
        Console.out("payment \(payment.id): \(Format.yuan(fen: payment.amountFen)) yuan, \(payment.state.label)")
      }

      switch payment.state {
      case .created, .started:
        guard !payment.cashierURL.isEmpty else {
          throw CLIError("the server returned no cashier for payment \(payment.id); see `owctl payments show \(payment.id)`")
        }
        let answer = try await SandboxCashier.authorise(url: payment.cashierURL, account: account)
        switch answer.status {
        case 200..<300:
          if !json {
            let meaning = SandboxCashier.meaning(account).map { " (\($0))" } ?? ""
            Console.out("authorised at the cashier with account \(account)\(meaning); waiting for the provider's answer")
          }
        case 409:
          Console.error("note: the cashier refused: \(answer.text) — checking the payment's state")
        default:
          throw CLIError("the cashier at \(payment.cashierURL) answered HTTP \(answer.status): \(answer.text)")
        }
      case .submitted:
        if !json { Console.out("already authorised at the provider; waiting for its answer") }
      default:
        break  // a replayed key: the payment is already finished
      }

      let final = try await PaymentPolling.untilFinished(remote, payment, progress: !json)
      try remote.output.show(final) { PaymentView.outcome(final, caseReference: caseID) }
      return final.state == .success
    }
    if !succeeded { throw ExitCode(1) }
  }

  /// The case's fee order, created with `key` the first time.
  static func order(_ remote: Remote, caseID: String, key: String) async throws -> Onewindow_V1_FeeOrder {
    do {
      return try await remote.authorized { metadata in
        try await remote.payments.getOrder(.with { $0.caseID = caseID }, metadata: metadata, options: remote.call)
      }
    } catch let error as RPCError where error.code == .notFound {
      return try await SameKeyRetry.run("creating the fee order") {
        try await remote.authorized { metadata in
          try await remote.payments.createOrder(.with {
            $0.caseID = caseID
            $0.idempotencyKey = key
          }, metadata: metadata, options: remote.call)
        }
      }
    }
  }
}

/// Retries a call that carries an idempotency key after a failure that may have lost the answer.
enum SameKeyRetry {
  static let transient: Set<RPCError.Code> = [.unavailable, .deadlineExceeded]
  static let attempts = 3

  static func run<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
    var attempt = 1
    while true {
      do {
        return try await body()
      } catch let error as RPCError where transient.contains(error.code) && attempt < attempts {
        Console.error("note: \(what) failed (\(error.code.canonicalName)); retrying with the same idempotency key")
        try await Task.sleep(for: .seconds(attempt))
        attempt += 1
      }
    }
  }
}

/// Asks for a payment until it is finished.
enum PaymentPolling {
  static let interval = Duration.milliseconds(300)
  static let limit = Duration.seconds(15)

  /// Polls GetPayment every 300 ms for up to 15 s; with `progress`, prints each new state.
  static func untilFinished(_ remote: Remote, _ start: Onewindow_V1_Payment, progress: Bool) async throws -> Onewindow_V1_Payment {
    var payment = start
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: limit)
    var shown = payment.state
    while !payment.state.isFinished && clock.now < deadline {
      try await Task.sleep(for: interval)
      let id = start.id
      do {
        payment = try await remote.authorized { metadata in
          try await remote.payments.getPayment(.with { $0.paymentID = id }, metadata: metadata, options: remote.call)
        }
      } catch let error as RPCError where SameKeyRetry.transient.contains(error.code) {
        // The payment goes on at the server; ask again until the deadline.
        continue
      }
      if progress && payment.state != shown && !payment.state.isFinished {
        Console.out("  … \(payment.state.label)")
      }
      shown = payment.state
    }
    return payment
  }
}

/// The sandbox provider's cashier, a plain-HTTP page on the server's HTTP listener.
enum SandboxCashier {
  struct Answer {
    var status: Int
    var text: String
  }

  /// What a test account does (nil for another number, which the sandbox declines).
  static func meaning(_ account: String) -> String? {
    switch account {
    case SandboxAccounts.success: "success"
    case SandboxAccounts.declined: "declined"
    case SandboxAccounts.timeout: "no answer"
    case SandboxAccounts.providerError: "provider error"
    case SandboxAccounts.delayedSuccess: "success after \(SandboxAccounts.delaySeconds) s"
    default: nil
    }
  }

  /// POSTs `{"account": …}` to the cashier URL the server gave.
  static func authorise(url: String, account: String) async throws -> Answer {
    guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), scheme == "http" || scheme == "https",
          parsed.host != nil
    else { throw CLIError("the cashier URL '\(url)' is not an absolute http(s) URL") }
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "content-type", value: "application/json")
    request.headers.add(name: "accept", value: "application/json")
    request.body = .bytes(Array(try JSONEncoder().encode(["account": account])))
    do {
      let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
      let body = try await response.body.collect(upTo: 64 * 1024)
      let text = String(decoding: body.readableBytesView, as: UTF8.self)
      return Answer(status: Int(response.status.code), text: ErrorReport.oneLine(text))
    } catch {
      throw CLIError("cannot reach the cashier at \(url): \(error)")
    }
  }
}

// MARK: - payments

struct PaymentsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "payments",
    abstract: "Fee orders and payments: list, show, cancel an unfinished payment.",
    discussion: """
      Applicants see their own orders, caseworkers their department's, administrators all. \
      Pay with `owctl pay CASE`; refunds are `owctl refund`, receipts `owctl receipt`.
      """,
    subcommands: [List.self, Show.self, Cancel.self],
    defaultSubcommand: List.self)

  enum StateFilter: String, CaseIterable, ExpressibleByArgument {
    case open, paid, waived

    var proto: Onewindow_V1_OrderState {
      switch self {
      case .open: .open
      case .paid: .paid
      case .waived: .waived
      }
    }
  }

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Fee orders, newest first.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Only orders in this state: open (something is due), paid or waived.")
    var state: StateFilter?

    @OptionGroup var page: PageOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.payments.listOrders(.with {
            $0.state = state?.proto ?? .unspecified
            $0.pageSize = page.pageSize
            $0.pageToken = page.token
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          if response.orders.isEmpty {
            Console.out(state.map { "no \($0.rawValue) orders" } ?? "no fee orders")
          } else {
            var table = Table(["CREATED", "ORDER ID", "TRACKING CODE", "ITEM", "DEPARTMENT", "DUE (YUAN)", "STATE"], right: [5])
            for o in response.orders {
              table.add([
                o.hasCreatedAt ? Format.minute(o.createdAt) : "", o.id, o.trackingCode, o.itemName, o.departmentCode,
                Format.yuan(fen: o.totalFen), o.state.label,
              ])
            }
            table.print()
          }
          if !response.nextPageToken.isEmpty { Console.out("more: --page-token \(response.nextPageToken)") }
        }
      }
    }
  }

  struct Show: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Show a fee order (lines, adjustments, payments, refunds) or one payment.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "An order id, a case id or tracking code, or a payment id (pay_…).")
    var id: String

    func execute() async throws {
      try await global.connect { remote in
        if PaymentText.isPaymentID(id) {
          let payment = try await remote.authorized { metadata in
            try await remote.payments.getPayment(.with { $0.paymentID = id }, metadata: metadata, options: remote.call)
          }
          try remote.output.show(payment) { PaymentView.print(payment) }
        } else {
          let order = try await OrderLookup.order(remote, id)
          try remote.output.show(order) { OrderView.print(order) }
        }
      }
    }
  }

  struct Cancel: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Abandon an unfinished payment (failed, P0030); refused once it was authorised at the provider.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The payment id (pay_…).")
    var paymentID: String

    func execute() async throws {
      try await global.connect { remote in
        let payment = try await remote.authorized { metadata in
          try await remote.payments.cancelPayment(.with { $0.paymentID = paymentID }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(payment) {
          let code = payment.code.isEmpty ? "" : ", \(PaymentText.code(payment.code))"
          Console.out("payment \(payment.id) is \(payment.state.label)\(code)")
          if payment.state == .success, !payment.receiptNumber.isEmpty {
            Console.out("it was paid before it could be cancelled: receipt \(payment.receiptNumber) (owctl receipt show \(payment.receiptNumber))")
          }
        }
      }
    }
  }
}

/// An order by its id, else by case id or tracking code.
enum OrderLookup {
  static func order(_ remote: Remote, _ reference: String) async throws -> Onewindow_V1_FeeOrder {
    do {
      return try await get(remote, .orderID(reference))
    } catch let error as RPCError where error.code == .notFound {
      return try await byCase(remote, reference)
    }
  }

  /// The order of a case (by case id or tracking code), after `reference` was no order id.
  static func byCase(_ remote: Remote, _ reference: String) async throws -> Onewindow_V1_FeeOrder {
    do {
      return try await get(remote, .caseID(reference))
    } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
      throw CLIError(
        "no fee order for '\(reference)': it is not an order id, nor the case id or tracking code of a case with an "
          + "order (the applicant's `owctl pay CASE` creates the order)")
    }
  }

  static func get(_ remote: Remote, _ selector: Onewindow_V1_GetOrderRequest.OneOf_Selector) async throws -> Onewindow_V1_FeeOrder {
    try await remote.authorized { metadata in
      try await remote.payments.getOrder(.with { $0.selector = selector }, metadata: metadata, options: remote.call)
    }
  }
}

// MARK: - refund

struct RefundCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "refund",
    abstract: "Caseworkers and administrators: refund all or part of a successful payment.",
    discussion: """
      Reads the payment first and sends its refundable amount along as the amount you saw: if \
      another refund changed it meanwhile, the server refuses (FAILED_PRECONDITION) instead of \
      refunding twice; run the command again to refund against the new amount. Exits 1 when \
      the provider reports the refund failed.
      """)

  @OptionGroup var global: GlobalOptions

  @Argument(help: "The payment id (pay_…; see `owctl payments show CASE`).")
  var paymentID: String

  @Option(help: ArgumentHelp("How much, in yuan, e.g. 12.30 (default: everything still refundable).", valueName: "yuan"))
  var amount: String?

  @Option(help: "Why (required, up to 500 characters).")
  var reason: String

  func validate() throws {
    if let amount { _ = try Yuan.fen(amount, option: "--amount", positive: true) }
    if reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw ArgumentParser.ValidationError("--reason must not be empty.") }
  }

  func execute() async throws {
    let requested = try amount.map { try Yuan.fen($0, option: "--amount", positive: true) }
    let ok = try await global.connect { remote -> Bool in
      let payment = try await remote.authorized { metadata in
        try await remote.payments.getPayment(.with { $0.paymentID = paymentID }, metadata: metadata, options: remote.call)
      }
      guard payment.refundableFen > 0 else {
        throw CLIError(
          "nothing to refund: payment \(payment.id) is \(payment.state.label), \(Format.yuan(fen: payment.refundedFen)) of "
            + "\(Format.yuan(fen: payment.amountFen)) yuan refunded")
      }
      let refund = try await remote.authorized { metadata in
        try await remote.payments.refund(.with {
          $0.paymentID = payment.id
          $0.amountFen = requested ?? payment.refundableFen
          $0.refundableSeenFen = payment.refundableFen
          $0.reason = reason
        }, metadata: metadata, options: remote.call)
      }
      try remote.output.show(refund) {
        Console.out("refund \(refund.id) of \(Format.yuan(fen: refund.amountFen)) yuan for payment \(refund.paymentID): \(refund.state.label)")
        switch refund.state {
        case .success:
          let left = payment.refundableFen - refund.amountFen
          Console.out("still refundable: \(Format.yuan(fen: max(0, left))) yuan")
        case .submitted:
          Console.out("the provider has not confirmed it yet; it is asked again in the background (`owctl payments show \(refund.paymentID)`)")
        default:
          Console.out("the provider refused the refund; nothing was paid back")
        }
      }
      return refund.state != .error
    }
    if !ok { throw ExitCode(1) }
  }
}

// MARK: - receipt

struct ReceiptCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "receipt",
    abstract: "E-receipts (电子票据) of successful payments: show, verify.",
    subcommands: [Show.self, Verify.self])

  struct Show: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Show a receipt and its signed text (OWR1.…).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The receipt number (e.g. PJ2026-7K3M-9QXT-2B8N) or the payment id (pay_…).")
    var reference: String

    @Flag(name: .customLong("signed-only"), help: "Print only the signed text, e.g. to pipe it into `owctl receipt verify -`.")
    var signedOnly = false

    func execute() async throws {
      try await global.connect { remote in
        let receipt = try await remote.authorized { metadata in
          try await remote.payments.getReceipt(.with {
            if PaymentText.isPaymentID(reference) { $0.paymentID = reference } else { $0.number = reference }
          }, metadata: metadata, options: remote.call)
        }
        if signedOnly && !global.json {
          Console.out(receipt.signed)
          return
        }
        try remote.output.show(receipt) {
          ReceiptView.print(receipt)
          Console.out("")
          Console.out("Signed receipt (check it with `owctl receipt verify -` or offline with the issuer keys):")
          Console.out(receipt.signed)
        }
      }
    }
  }

  struct Verify: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Check a signed receipt's signature with the server (no login needed); exits 1 unless valid.",
      discussion: """
        The receipt is the OWR1.… text itself, `-` to read it from standard input (e.g. from \
        `owctl receipt show NUMBER --signed-only`), or @FILE. A file may also hold the JSON of \
        `owctl --json receipt show`.
        """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("OWR1.… text, - for standard input, or @file.", valueName: "receipt"))
    var receipt: String

    func execute() async throws {
      let signed = try ReceiptInput.read(receipt)
      let response = try await global.connect { remote in
        try await remote.payments.verifyReceipt(.with { $0.signed = signed }, options: remote.call)
      }
      try global.output.show(response) {
        if response.valid {
          Console.out("VALID: signed by key \(response.receipt.keyID)")
          Console.out("")
          ReceiptView.print(response.receipt)
        } else {
          Console.out("NOT VALID: \(response.problem)")
        }
      }
      if !response.valid { throw ExitCode(1) }
    }
  }
}

enum ReceiptInput {
  /// The signed text from the argument: itself, `-` (stdin) or `@file`.
  static func read(_ argument: String) throws -> String {
    let text: String
    let source: String
    if argument == "-" {
      source = "standard input"
      let data = FileHandle.standardInput.readDataToEndOfFile()
      guard let s = String(data: data.prefix(64 * 1024), encoding: .utf8) else { throw CLIError("standard input is not UTF-8 text") }
      text = s
    } else if argument.hasPrefix("@") {
      let path = String(argument.dropFirst())
      source = path
      guard FileManager.default.fileExists(atPath: path) else { throw CLIError("no such file: \(path)") }
      let data: Data
      do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw CLIError("cannot read \(path): \(ErrorReport.describe(error))")
      }
      guard data.count <= 64 * 1024 else { throw CLIError("\(path) is too large to be a receipt") }
      guard let s = String(data: data, encoding: .utf8) else { throw CLIError("\(path) is not UTF-8 text") }
      text = s
    } else {
      source = "the argument"
      text = argument
    }
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !trimmed.isEmpty else { throw CLIError("\(source) holds no receipt") }
    if trimmed.hasPrefix("{") {
      var options = JSONDecodingOptions()
      options.ignoreUnknownFields = true
      if let receipt = try? Onewindow_V1_Receipt(jsonString: trimmed, options: options), !receipt.signed.isEmpty {
        return receipt.signed
      }
      if let response = try? Onewindow_V1_VerifyReceiptResponse(jsonString: trimmed, options: options), !response.receipt.signed.isEmpty {
        return response.receipt.signed
      }
      throw CLIError("\(source) is JSON without a receipt's \"signed\" field")
    }
    let token = trimmed.split(whereSeparator: { $0.isWhitespace }).first { $0.hasPrefix(SignedReceipt.prefix + ".") }
    return token.map(String.init) ?? trimmed
  }
}

// MARK: - worker fee

struct WorkerFeeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fee",
    abstract: "Waive or reduce one line of a case's fee order (减免), with a reason (audited).",
    discussion: """
      ORDER is the order id, or the case id or tracking code. Lines are numbered as \
      `owctl payments show ORDER` lists them (from 0). Refused while a payment is unfinished and \
      once the order is paid; an order reduced to nothing is waived and needs no payment.
      """,
    subcommands: [Waive.self, Reduce.self])

  struct Target: ParsableArguments {
    @Argument(help: "The order id, or the case id or tracking code.")
    var order: String

    @Option(help: "The fee line's number (LINE in `owctl payments show`).")
    var line: Int32

    @Option(help: "Why (required, up to 500 characters; audited).")
    var reason: String

    @Option(help: "Act only if the order is still at this version; otherwise ABORTED.")
    var expectedVersion: Int64?

    func validate() throws {
      if line < 0 { throw ArgumentParser.ValidationError("--line must not be negative.") }
      if reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw ArgumentParser.ValidationError("--reason must not be empty.") }
      if let expectedVersion, expectedVersion < 1 { throw ArgumentParser.ValidationError("--expected-version must be 1 or more.") }
    }
  }

  struct Waive: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Waive a fee line entirely.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: Target
    func execute() async throws {
      try await AdjustFee.run(global, target, .waive(true), verb: "waived")
    }
  }

  struct Reduce: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Reduce a fee line by an amount in yuan.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: Target
    @Option(help: ArgumentHelp("By how much, in yuan, e.g. 5 or 12.30 (at most the line's fee).", valueName: "yuan"))
    var by: String
    func validate() throws {
      _ = try Yuan.fen(by, option: "--by", positive: true)
    }
    func execute() async throws {
      let fen = try Yuan.fen(by, option: "--by", positive: true)
      try await AdjustFee.run(global, target, .reduceByFen(fen), verb: "reduced by \(Format.yuan(fen: fen)) yuan")
    }
  }
}

/// Sends one AdjustFee (resolving a case id or tracking code to its order) and prints the order.
enum AdjustFee {
  static func run(
    _ global: GlobalOptions, _ target: WorkerFeeCommand.Target, _ adjustment: Onewindow_V1_AdjustFeeRequest.OneOf_Adjustment,
    verb: String
  ) async throws {
    try await global.connect { remote in
      func adjust(_ orderID: String) async throws -> Onewindow_V1_FeeOrder {
        try await remote.authorized { metadata in
          try await remote.payments.adjustFee(.with {
            $0.orderID = orderID
            $0.line = target.line
            $0.adjustment = adjustment
            $0.reason = target.reason
            $0.expectedVersion = target.expectedVersion ?? 0
          }, metadata: metadata, options: remote.call)
        }
      }
      let order: Onewindow_V1_FeeOrder
      do {
        order = try await adjust(target.order)
      } catch let error as RPCError where error.code == .notFound {
        // Not an order id: a case id or tracking code.
        order = try await adjust(try await OrderLookup.byCase(remote, target.order).id)
      }
      try remote.output.show(order) {
        let name = order.lines.first(where: { $0.index == target.line })?.name ?? "line \(target.line)"
        Console.out(
          "\(verb): line \(target.line) (\(name)) of order \(order.id); now due \(Format.yuan(fen: order.totalFen)) yuan, "
            + "\(order.state.label), version \(order.version)")
        OrderView.lines(order).print()
      }
    }
  }
}

// MARK: - admin payments

struct AdminPaymentsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "payments",
    abstract: "Reconcile a day with the provider's settlement file; check the ledger's invariants.",
    subcommands: [Reconcile.self, Check.self])

  struct Reconcile: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Compare one business day (UTC+8) of the ledger with the provider's settlement; exits 1 on mismatches.")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The settlement day, YYYY-MM-DD (the provider's business day, UTC+8).", valueName: "date"))
    var date: String

    func validate() throws {
      guard CivilDate(date) != nil else { throw ArgumentParser.ValidationError("--date must be YYYY-MM-DD, e.g. 2026-11-23.") }
    }

    func execute() async throws {
      let response = try await global.connect { remote in
        try await remote.authorized { metadata in
          try await remote.payments.reconcile(.with { $0.date = date }, metadata: metadata, options: remote.call)
        }
      }
      try global.output.show(response) {
        Console.out(
          "\(response.date) (UTC+8): \(response.matched) matched; captured \(Format.yuan(fen: response.capturedFen)) yuan, "
            + "refunded \(Format.yuan(fen: response.refundedFen)) yuan (our ledger)")
        if response.mismatches.isEmpty {
          Console.out("no mismatches")
        } else {
          var table = Table(["KIND", "ENTRY", "REFERENCE", "OURS (YUAN)", "THEIRS (YUAN)"], right: [3, 4])
          for m in response.mismatches {
            table.add([
              m.kind, m.entry, m.reference, m.kind == "missing_on_our_side" ? "-" : Format.yuan(fen: m.ourAmountFen),
              m.kind == "missing_on_theirs" ? "-" : Format.yuan(fen: m.theirAmountFen),
            ])
          }
          table.print()
          Console.out("\(response.mismatches.count) mismatch(es)")
        }
      }
      if !response.mismatches.isEmpty { throw ExitCode(1) }
    }
  }

  struct Check: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Verify the ledger's invariants over every transaction; exits 1 on violations.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      let response = try await global.connect { remote in
        try await remote.authorized { metadata in
          try await remote.payments.checkLedger(.init(), metadata: metadata, options: remote.call)
        }
      }
      try global.output.show(response) {
        Console.out("\(response.transactions) transaction(s)")
        if !response.balances.isEmpty {
          var table = Table(["ACCOUNT", "BALANCE (YUAN, DEBIT +)"], right: [1])
          for name in response.balances.keys.sorted() { table.add([name, Format.yuan(fen: response.balances[name] ?? 0)]) }
          table.print()
        }
        if response.violations.isEmpty {
          Console.out("no violations: every transaction balances, no payment is refunded beyond its capture or captured twice")
        } else {
          Console.out("\(response.violations.count) violation(s):")
          for v in response.violations { Console.out("  \(v)") }
        }
      }
      if !response.violations.isEmpty { throw ExitCode(1) }
    }
  }
}

// MARK: - Money and ids

extension Format {
  /// 1230 fen → "12.30"; negative amounts (ledger balances) keep their sign.
  static func yuan(fen: Int64) -> String {
    let magnitude = fen.magnitude
    let cents = magnitude % 100
    return "\(fen < 0 ? "-" : "")\(magnitude / 100).\(cents < 10 ? "0" : "")\(cents)"
  }
}

enum Yuan {
  /// "12", "12.3", "12.30" → 1230 fen, exactly (no floating point). More than two decimals,
  /// signs, exponents and empty parts are refused.
  static func fen(_ text: String, option: String, positive: Bool = false) throws -> Int64 {
    let bad = ArgumentParser.ValidationError("\(option) '\(text)' is not an amount in yuan like 12, 12.3 or 12.30.")
    let parts = text.trimmingCharacters(in: .whitespaces).split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    let isDigits = { (s: Substring) in !s.isEmpty && s.allSatisfy { $0.isASCII && $0.isNumber } }
    guard let whole = parts.first, isDigits(whole) else { throw bad }
    var cents: Int64 = 0
    if parts.count == 2 {
      let fraction = parts[1]
      guard isDigits(fraction) else { throw bad }
      guard fraction.count <= 2 else {
        throw ArgumentParser.ValidationError("\(option) '\(text)' has more than two decimals: the smallest amount is 0.01 yuan (1 fen).")
      }
      cents = Int64(String(fraction) + (fraction.count == 1 ? "0" : "")) ?? 0
    }
    let tooLarge = ArgumentParser.ValidationError("\(option) '\(text)' is too large.")
    guard let yuan = Int64(whole) else { throw tooLarge }
    let (hundreds, overflow) = yuan.multipliedReportingOverflow(by: 100)
    guard !overflow, hundreds <= Int64.max - cents else { throw tooLarge }
    let fen = hundreds + cents
    if positive && fen == 0 { throw ArgumentParser.ValidationError("\(option) must be more than 0.") }
    return fen
  }
}

enum IdempotencyKeyText {
  static func validate(_ key: String) throws {
    guard (1...64).contains(key.count), key.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }) else {
      throw ArgumentParser.ValidationError("--idempotency-key must be 1–64 printable ASCII characters without spaces.")
    }
  }
}

enum PaymentText {
  static let paymentPrefix = "pay_"

  static func isPaymentID(_ text: String) -> Bool { text.hasPrefix(paymentPrefix) }

  /// The first `pay_…` id in a server message (e.g. the unfinished payment an order already has).
  static func paymentID(in message: String) -> String? {
    guard let start = message.range(of: paymentPrefix) else { return nil }
    let id = message[start.lowerBound...].prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    return id.count > paymentPrefix.count ? String(id) : nil
  }

  /// What a payment's public code means.
  static func meaning(_ code: String) -> String? {
    switch code {
    case "P0010": "declined"
    case "P0020": "timed out or expired"
    case "P0030": "cancelled by the payer"
    case "P0040": "cancelled by the service"
    case "P0050": "provider error"
    default: nil
    }
  }

  /// `P0010 (declined)`.
  static func code(_ code: String) -> String {
    meaning(code).map { "\(code) (\($0))" } ?? code
  }
}

// MARK: - Labels

extension Onewindow_V1_OrderState {
  var name: String {
    switch self {
    case .open: "open"
    case .paid: "paid"
    case .waived: "waived"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "state_\(n)"
    }
  }

  var chinese: String {
    switch self {
    case .open: "待缴费"
    case .paid: "已缴费"
    case .waived: "已减免"
    case .unspecified, .UNRECOGNIZED: ""
    }
  }

  /// `待缴费 (open)`.
  var label: String { chinese.isEmpty ? name : "\(chinese) (\(name))" }
}

extension Onewindow_V1_PaymentState {
  var name: String {
    switch self {
    case .created: "created"
    case .started: "started"
    case .submitted: "submitted"
    case .success: "success"
    case .failed: "failed"
    case .cancelled: "cancelled"
    case .error: "error"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "state_\(n)"
    }
  }

  var chinese: String {
    switch self {
    case .created: "已创建"
    case .started: "待支付"
    case .submitted: "支付确认中"
    case .success: "支付成功"
    case .failed: "支付失败"
    case .cancelled: "已取消"
    case .error: "支付异常"
    case .unspecified, .UNRECOGNIZED: ""
    }
  }

  /// `支付成功 (success)`.
  var label: String { chinese.isEmpty ? name : "\(chinese) (\(name))" }

  /// Success, failed, cancelled and error are final.
  var isFinished: Bool {
    switch self {
    case .success, .failed, .cancelled, .error: true
    default: false
    }
  }
}

extension Onewindow_V1_RefundState {
  var name: String {
    switch self {
    case .submitted: "submitted"
    case .success: "success"
    case .error: "error"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "state_\(n)"
    }
  }

  var chinese: String {
    switch self {
    case .submitted: "退款中"
    case .success: "已退款"
    case .error: "退款失败"
    case .unspecified, .UNRECOGNIZED: ""
    }
  }

  var label: String { chinese.isEmpty ? name : "\(chinese) (\(name))" }
}

// MARK: - Views

enum OrderView {
  /// One row per fee line: what it was, what is due, and any waiver or reduction.
  static func lines(_ o: Onewindow_V1_FeeOrder, indent: String = "  ") -> Table {
    var table = Table(["LINE", "FEE", "ORIGINAL", "DUE", "ADJUSTMENT"], right: [0, 2, 3])
    table.indent = indent
    for line in o.lines {
      table.add([
        "\(line.index)", line.name, Format.yuan(fen: line.originalFen), Format.yuan(fen: line.dueFen),
        line.hasAdjustment ? adjustment(line.adjustment) : "",
      ])
    }
    return table
  }

  static func adjustment(_ a: Onewindow_V1_FeeAdjustmentInfo) -> String {
    let what = a.kind == "reduction" ? "reduced by \(Format.yuan(fen: a.reducedByFen))" : a.kind == "waiver" ? "waived" : a.kind
    var text = what
    if !a.caseworkerID.isEmpty { text += " by \(a.caseworkerID)" }
    if !a.reason.isEmpty { text += ": \(a.reason)" }
    return text
  }

  /// What `owctl pay` shows before paying.
  static func due(_ o: Onewindow_V1_FeeOrder) {
    Console.out("\(o.itemName)  case \(o.trackingCode), fee order \(o.id)")
    lines(o).print()
    Console.out("to pay: \(Format.yuan(fen: o.totalFen)) yuan")
  }

  /// An order with nothing left to pay.
  static func settled(_ o: Onewindow_V1_FeeOrder) {
    if o.state == .waived {
      Console.out("nothing to pay: the fees of case \(o.trackingCode) were waived (order \(o.id))")
      lines(o).print()
      return
    }
    Console.out("already paid: the fees of case \(o.trackingCode) (order \(o.id), \(Format.yuan(fen: o.totalFen)) yuan)")
    if let paid = o.payments.first(where: { $0.state == .success }) {
      Console.out("payment \(paid.id)" + (paid.receiptNumber.isEmpty ? "" : ", receipt \(paid.receiptNumber)"))
      if !paid.receiptNumber.isEmpty { Console.out("see it with `owctl receipt show \(paid.receiptNumber)`") }
    }
  }

  static func print(_ o: Onewindow_V1_FeeOrder) {
    var lines: [String] = []
    lines.append("\(o.itemName)  fee order \(o.id)")
    let total = o.totalFen == o.originalTotalFen
      ? "\(Format.yuan(fen: o.totalFen)) yuan"
      : "\(Format.yuan(fen: o.totalFen)) yuan (of \(Format.yuan(fen: o.originalTotalFen)) before adjustments)"
    lines.append(Table.keyValue([
      ("Case", o.caseID),
      ("Tracking code", o.trackingCode),
      ("Department", o.departmentCode),
      ("State", "\(o.state.label), version \(o.version)"),
      ("Due", total),
      ("Created", o.hasCreatedAt ? Format.minute(o.createdAt) : ""),
      ("Updated", o.hasUpdatedAt ? Format.minute(o.updatedAt) : ""),
    ]).render())
    lines += ["", "Fees (收费项目)", Self.lines(o).render()]
    lines += ["", "Payments"]
    if o.payments.isEmpty {
      lines.append("  none" + (o.state == .open ? " (pay with `owctl pay \(o.trackingCode)`)" : ""))
    } else {
      var table = Table(["PAYMENT", "CREATED", "AMOUNT", "STATE", "CODE", "REFUNDED", "REFUNDABLE", "RECEIPT"], right: [2, 5, 6])
      table.indent = "  "
      for p in o.payments {
        table.add([
          p.id, p.hasCreatedAt ? Format.minute(p.createdAt) : "", Format.yuan(fen: p.amountFen), p.state.label,
          p.code.isEmpty ? "" : PaymentText.code(p.code), Format.yuan(fen: p.refundedFen), Format.yuan(fen: p.refundableFen),
          p.receiptNumber,
        ])
      }
      lines.append(table.render())
      for p in o.payments where !p.refunds.isEmpty {
        lines += ["", "Refunds of \(p.id)", PaymentView.refunds(p.refunds).render()]
      }
    }
    Console.out(lines.joined(separator: "\n"))
    if let unfinished = o.payments.first(where: { !$0.state.isFinished }) {
      Console.out("")
      Console.out("payment \(unfinished.id) is unfinished: `owctl payments show \(unfinished.id)`, `owctl payments cancel \(unfinished.id)`")
    }
  }
}

enum PaymentView {
  static func refunds(_ refunds: [Onewindow_V1_RefundInfo], indent: String = "  ") -> Table {
    var table = Table(["REFUND", "CREATED", "AMOUNT", "STATE", "BY", "REASON"], right: [2])
    table.indent = indent
    for r in refunds {
      table.add([
        r.id, r.hasCreatedAt ? Format.minute(r.createdAt) : "", Format.yuan(fen: r.amountFen), r.state.label,
        r.automatic ? "automatic" : r.requestedBy, r.reason,
      ])
    }
    return table
  }

  static func print(_ p: Onewindow_V1_Payment) {
    let unfinished = !p.state.isFinished
    Table.keyValue([
      ("Payment", p.id),
      ("Order", p.orderID),
      ("Case", p.caseID),
      ("Amount", "\(Format.yuan(fen: p.amountFen)) yuan"),
      ("State", p.state.label),
      ("Code", p.code.isEmpty ? "" : PaymentText.code(p.code)),
      ("Provider", p.providerReference.isEmpty ? p.provider : "\(p.provider) (\(p.providerReference))"),
      ("Cashier", unfinished ? p.cashierURL : ""),
      ("Created", p.hasCreatedAt ? Format.minute(p.createdAt) : ""),
      ("Updated", p.hasUpdatedAt ? Format.minute(p.updatedAt) : ""),
      ("Expires", unfinished && p.hasExpiresAt ? Format.minute(p.expiresAt) : ""),
      ("Refunded", p.state == .success ? "\(Format.yuan(fen: p.refundedFen)) yuan" : ""),
      ("Refundable", p.state == .success ? "\(Format.yuan(fen: p.refundableFen)) yuan" : ""),
      ("Receipt", p.receiptNumber),
    ]).print()
    if !p.refunds.isEmpty {
      Console.out("Refunds:")
      refunds(p.refunds).print()
    }
    if unfinished && p.state != .submitted {
      Console.out("cancel it with `owctl payments cancel \(p.id)`")
    } else if !p.receiptNumber.isEmpty {
      Console.out("receipt: `owctl receipt show \(p.receiptNumber)`")
    }
  }

  /// The end of `owctl pay`.
  static func outcome(_ p: Onewindow_V1_Payment, caseReference: String) {
    switch p.state {
    case .success:
      Console.out("paid \(Format.yuan(fen: p.amountFen)) yuan: payment \(p.id) \(p.state.label)")
      if !p.receiptNumber.isEmpty {
        Console.out("receipt \(p.receiptNumber)  (owctl receipt show \(p.receiptNumber))")
      }
    case .failed, .cancelled, .error:
      let code = p.code.isEmpty ? "" : ": \(PaymentText.code(p.code))"
      Console.out("payment \(p.id) \(p.state.label)\(code); nothing was charged")
      Console.out("try again with `owctl pay \(caseReference)` (a new payment)")
    default:
      var line = "payment \(p.id) is still \(p.state.label) after \(PaymentPolling.limit.components.seconds) s"
      if p.state == .submitted { line += ": the provider has not answered yet; the server asks it again before the payment expires" }
      if p.hasExpiresAt { line += " (at \(Format.minute(p.expiresAt)))" }
      Console.out(line)
      Console.out("follow it with `owctl payments show \(p.id)`")
    }
  }
}

enum ReceiptView {
  static func print(_ r: Onewindow_V1_Receipt) {
    Table.keyValue([
      ("Receipt", r.number),
      ("Payment", r.paymentID),
      ("Case", r.caseID),
      ("Tracking code", r.trackingCode),
      ("Payer", r.payerName),
      ("Department", r.departmentCode),
      ("Paid at", r.hasPaidAt ? Format.date(r.paidAt) : ""),
      ("Total", "\(Format.yuan(fen: r.totalFen)) yuan"),
      ("Signing key", r.keyID),
    ]).print()
    if !r.items.isEmpty {
      var table = Table(["ITEM", "YUAN"], right: [1])
      table.indent = "  "
      for item in r.items { table.add([item.name, Format.yuan(fen: item.amountFen)]) }
      table.print()
    }
  }
}
