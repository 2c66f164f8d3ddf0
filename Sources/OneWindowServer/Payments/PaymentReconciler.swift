import Foundation
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowDatabase
import OneWindowStore

/// Reconciliation with the provider's settlement file and the ledger invariant check, shared by
/// the admin RPCs and `onewindow payments reconcile|check`.
struct PaymentReconciler {
  let store: any PaymentStore
  let provider: any PaymentProvider

  struct Outcome {
    var report: ReconciliationReport
    var captured: Int64
    var refunded: Int64

    func message(day: CivilDate) -> Onewindow_V1_ReconcileResponse {
      .with {
        $0.date = day.description
        $0.matched = Int32(clamping: report.matched)
        $0.capturedFen = captured
        $0.refundedFen = refunded
        $0.mismatches = report.mismatches.map { m in
          .with {
            $0.kind = m.kind.rawValue
            $0.entry = m.entry.rawValue
            $0.reference = m.reference
            $0.ourAmountFen = m.ours?.value ?? 0
            $0.theirAmountFen = m.theirs?.value ?? 0
          }
        }
      }
    }
  }

  /// Compares the ledger's movements of `day` (UTC+8) with what the provider settled that day.
  func reconcile(day: CivilDate) async throws -> Outcome {
    let (start, end) = SettlementDay.bounds(day)
    let ours = try await store.ledgerEntries(
      from: Date(timeIntervalSince1970: Double(start) / 1000), to: Date(timeIntervalSince1970: Double(end) / 1000))
    let theirs = try await provider.settlement(day: day)
    return Outcome(
      report: Reconciliation.compare(ours: ours, theirs: theirs),
      captured: ours.filter { $0.kind == .capture }.reduce(0) { $0 &+ $1.amount.value },
      refunded: ours.filter { $0.kind == .refund }.reduce(0) { $0 &+ $1.amount.value })
  }

  struct LedgerHealth {
    var transactions: Int
    var violations: [LedgerViolation]
    var balances: [String: Int64]
  }

  /// `LedgerCheck` over every transaction, with each account's balance.
  func checkLedger() async throws -> LedgerHealth {
    let ledger = try await store.ledger()
    var balances: [String: Int64] = [:]
    for t in ledger { for p in t.postings { balances[p.account.name, default: 0] &+= p.amount } }
    return LedgerHealth(transactions: ledger.count, violations: LedgerCheck.verify(ledger), balances: balances)
  }
}

/// `onewindow payments check|reconcile`, run against the data directory (the server may be
/// running: both only read).
public enum PaymentMaintenance {
  /// Verifies the ledger invariants; returns the report lines and whether it is clean.
  public static func check(store: any Store) async throws -> (lines: [String], ok: Bool) {
    let health = try await PaymentReconciler(store: store.payments, provider: UnavailableProvider()).checkLedger()
    var lines = ["ledger: \(health.transactions) transactions"]
    for (account, balance) in health.balances.sorted(by: { $0.key < $1.key }) {
      lines.append("  \(account): \(balance) fen")
    }
    lines += health.violations.map { "VIOLATION: \($0.description)" }
    lines.append(health.violations.isEmpty ? "ledger OK: every transaction balances, no double capture, no over-refund" : "ledger has \(health.violations.count) violations")
    return (lines, health.violations.isEmpty)
  }

  /// Compares the ledger of `day` with the sandbox provider's settlement file (its books).
  public static func reconcile(database: OpenedDatabase, day: CivilDate, logger: Logger) async throws
    -> (lines: [String], ok: Bool)
  {
    let sandbox = SandboxProvider(
      book: database.sandboxBook, secret: "", clock: SystemClock(), callbackDelay: .zero, logger: logger)
    let outcome = try await PaymentReconciler(store: database.store.payments, provider: sandbox).reconcile(day: day)
    var lines = [
      "reconciliation of \(day) (UTC+8) with the sandbox settlement file: \(outcome.report.matched) matched, "
        + "captured \(outcome.captured) fen, refunded \(outcome.refunded) fen",
    ]
    for m in outcome.report.mismatches {
      lines.append("  \(m.kind.rawValue) \(m.entry.rawValue) \(m.reference): ours \(m.ours.map { String($0.value) } ?? "-"), theirs \(m.theirs.map { String($0.value) } ?? "-")")
    }
    lines.append(outcome.report.mismatches.isEmpty ? "no mismatches" : "\(outcome.report.mismatches.count) mismatches")
    return (lines, outcome.report.mismatches.isEmpty)
  }

  /// The ledger check needs no provider.
  struct UnavailableProvider: PaymentProvider {
    var name: String { "none" }
    struct Unavailable: Error {}
    func open(_ request: ProviderPaymentRequest) async throws -> ProviderSession { throw Unavailable() }
    func status(reference: String) async throws -> ProviderPaymentStatus { throw Unavailable() }
    func close(reference: String) async throws -> ProviderPaymentStatus { throw Unavailable() }
    func refund(_ request: ProviderRefundRequest) async throws -> ProviderRefundStatus { throw Unavailable() }
    func refundStatus(refundID: String) async throws -> ProviderRefundStatus { throw Unavailable() }
    func settlement(day: CivilDate) async throws -> [SettlementEntry] { throw Unavailable() }
    func verifyCallback(headers: [String: String], body: [UInt8], now: Date) throws(CallbackRejection) -> ProviderCallback {
      throw CallbackRejection(status: 404, "no provider")
    }
  }
}
