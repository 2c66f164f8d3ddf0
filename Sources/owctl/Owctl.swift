import ArgumentParser
import Foundation
import OneWindowClientPosix

/// `owctl`: the terminal client of OneWindow.
@main
struct Owctl: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "owctl",
    abstract: "Terminal client for the OneWindow government service platform.",
    discussion: """
      Global options (--server, --tls, --ca-cert, --gzip, --json) are accepted by every command.
      After `owctl login` the session is saved in $OWCTL_CONFIG_DIR/session.json \
      (default ~/.config/owctl), one per server, and refreshed automatically.
      """,
    subcommands: [
      HealthCommand.self,
      RegisterCommand.self,
      LoginCommand.self,
      WhoAmICommand.self,
      LogoutCommand.self,
      PasswdCommand.self,
      CatalogCommand.self,
      RecordsCommand.self,
      SyncCommand.self,
      ConflictsCommand.self,
      CaseCommand.self,
      TrackCommand.self,
      WorkerCommand.self,
      CertificateCommand.self,
      PayCommand.self,
      PaymentsCommand.self,
      RefundCommand.self,
      ReceiptCommand.self,
      RateCommand.self,
      RectifyCommand.self,
      AuditCommand.self,
      InboxCommand.self,
      WatchCommand.self,
      ReadCommand.self,
      TopicsCommand.self,
      AdminCommand.self,
    ]
  )

  @OptionGroup var global: GlobalOptions
}

/// Options shared by every command.
struct GlobalOptions: ParsableArguments {
  @Option(help: ArgumentHelp(
    "Server address (env OWCTL_SERVER; default \(GlobalOptions.defaultServer)).", valueName: "host:port"))
  var server: String?

  @Flag(help: "Connect with TLS, verifying the server against the system roots or --ca-cert.")
  var tls = false

  @Option(name: .customLong("ca-cert"), help: ArgumentHelp(
    "PEM certificate of the CA to trust (env OWCTL_CA_CERT, used with --tls); implies --tls.", valueName: "path"))
  var caCert: String?

  @Flag(help: "Compress requests with gzip.")
  var gzip = false

  @Flag(help: "Print responses in the protobuf JSON mapping (for scripts).")
  var json = false

  static let defaultServer = "127.0.0.1:50051"

  /// `--server`, else `OWCTL_SERVER`, else the default.
  var serverAddress: String {
    if let server { return server }
    if let env = Environment.value("OWCTL_SERVER") { return env }
    return Self.defaultServer
  }

  func connectionOptions() throws -> ConnectionOptions {
    let ca = caCert ?? (tls ? Environment.value("OWCTL_CA_CERT") : nil)
    return try ConnectionOptions(server: serverAddress, tls: tls || caCert != nil, caCertificatePath: ca, gzip: gzip)
  }

  var output: Output { Output(json: json) }
}

/// `--limit` and `--page-token` of the list commands whose server pages hold 1 to 200 entries.
struct PageOptions: ParsableArguments {
  @Option(help: "Page size (1–200; default 50).")
  var limit: Int32?

  @Option(help: "Continue from a previous page's next-page token.")
  var pageToken: String?

  func validate() throws {
    if let limit, !(1...200).contains(limit) { throw ArgumentParser.ValidationError("--limit must be 1 to 200.") }
  }

  /// The request's page size; 0 asks for the server's default.
  var pageSize: Int32 { limit ?? 0 }

  /// The request's page token; empty for the first page.
  var token: String { pageToken ?? "" }
}

/// A leaf command. `run()` reports any failure as one `error: …` line on stderr and exits 1.
protocol OwctlCommand: AsyncParsableCommand {
  var global: GlobalOptions { get }
  func execute() async throws
}

extension OwctlCommand {
  mutating func run() async throws {
    do {
      try await execute()
    } catch let error as ExitCode {
      throw error
    } catch let error as CleanExit {
      throw error
    } catch let error as ValidationError {
      throw error
    } catch {
      let server = (try? global.connectionOptions().display) ?? global.serverAddress
      Console.error(ErrorReport.line(for: error, server: server))
      throw ExitCode(1)
    }
  }
}

enum Environment {
  /// The variable's value, or nil when unset or empty.
  static func value(_ name: String) -> String? {
    guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
    return value
  }
}
