import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix

/// The scenarios owbench knows. Adding one: a name and a setup that returns the call
/// (`PreparedScenario`). The sync scenarios are in SyncScenarios.swift.
enum Scenarios {
  static let all: [Scenario] = [
    ping, catalogGet, catalogSearch, login, syncPush, syncPull, syncWatch, caseSubmit, caseTrack,
    notifyDirect, notifyBroadcast, notifyBroadcast1k, notifyBroadcast10k, pay,
  ]
  static var names: [String] { all.map(\.name) }
  /// Without --scenarios: all but the notification ones (NotifyScenarios.swift), which publish
  /// as an administrator and open up to 10 000 streams, and `pay`, whose setup submits thousands
  /// of cases first.
  static var defaultNames: [String] { names.filter { !NotifyBench.names.contains($0) && $0 != pay.name } }

  static func named(_ name: String) -> Scenario? { all.first { $0.name == name } }

  /// grpc.health.v1 Health/Check for the whole server: the transport baseline.
  static let ping = Scenario(name: "ping") { _ in
    let request = Grpc_Health_V1_HealthCheckRequest()
    return PreparedScenario { client, _ in
      _ = try await Grpc_Health_V1_Health.Client(wrapping: client).check(request)
    }
  }

  /// GetItem, cycling through the codes of every published item.
  static let catalogGet = Scenario(name: "catalog-get") { client in
    let codes = try await publishedItemCodes(client)
    guard !codes.isEmpty else {
      throw BenchError("catalog-get: the server has no published items (start it with --demo, or use --spawn)")
    }
    let requests = codes.map { code in Onewindow_V1_GetItemRequest.with { $0.code = code } }
    return PreparedScenario { client, index in
      _ = try await Onewindow_V1_CatalogService.Client(wrapping: client).getItem(requests[index % requests.count])
    }
  }

  /// Queries a citizen would type, both ≥ 3 characters (trigram index) and shorter (substring scan).
  static let searchQueries = ["身份证", "营业执照", "社会保障卡", "护照", "结婚登记", "公积金", "驾驶证", "医保", "出生", "退休"]

  /// SearchItems (first page, default page size), cycling through `searchQueries`.
  static let catalogSearch = Scenario(name: "catalog-search") { _ in
    let requests = searchQueries.map { query in Onewindow_V1_SearchItemsRequest.with { $0.query = query } }
    return PreparedScenario { client, index in
      _ = try await Onewindow_V1_CatalogService.Client(wrapping: client).searchItems(requests[index % requests.count])
    }
  }

  /// LoginWithPassword for a citizen account registered by the setup. The server's password hash
  /// is deliberately slow (PBKDF2), so this scenario's QPS is small by design.
  static let login = Scenario(name: "login") { client in
    let password = "Bench-pass-123"
    let phone = try await registerBenchCitizen(client, password: password)
    let request = Onewindow_V1_LoginWithPasswordRequest.with {
      $0.login = phone
      $0.password = password
    }
    return PreparedScenario { client, _ in
      _ = try await Onewindow_V1_IdentityService.Client(wrapping: client).loginWithPassword(request)
    }
  }

  // MARK: Setup helpers

  static func publishedItemCodes(_ client: BenchClient) async throws -> [String] {
    let catalog = Onewindow_V1_CatalogService.Client(wrapping: client)
    var codes: [String] = []
    var token = ""
    repeat {
      let page = try await catalog.listItems(.with {
        $0.pageSize = 100
        $0.pageToken = token
      })
      codes += page.items.map(\.code)
      token = page.nextPageToken
    } while !token.isEmpty && codes.count < 100_000
    return codes
  }

  /// Registers a citizen with a random phone 1390000xxxx and a valid random ID number; retries
  /// on ALREADY_EXISTS. Returns the phone (the login name).
  static func registerBenchCitizen(_ client: BenchClient, password: String) async throws -> String {
    let identity = Onewindow_V1_IdentityService.Client(wrapping: client)
    for _ in 0..<20 {
      let phone = "1390000" + zeroPadded(Int.random(in: 0...9999), width: 4)
      let idNumber = ResidentID.random()
      do {
        _ = try await identity.registerCitizen(.with {
          $0.name = "压测用户"
          $0.phone = phone
          $0.idNumber = idNumber
          $0.password = password
        })
        return phone
      } catch let error as RPCError where error.code == .alreadyExists {
        continue
      }
    }
    throw BenchError("could not register a bench account (20 phone/ID collisions)")
  }
}

/// Resident ID numbers (GB 11643) for test accounts.
enum ResidentID {
  static let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
  static let checkCharacters = Array("10X98765432")

  /// ISO 7064 MOD 11-2 check character of a 17-digit prefix; nil when it isn't 17 digits.
  static func checkCharacter(_ prefix: String) -> Character? {
    let digits = prefix.compactMap(\.wholeNumberValue)
    guard digits.count == 17, prefix.count == 17 else { return nil }
    let sum = zip(digits, weights).reduce(0) { $0 + $1.0 * $1.1 }
    return checkCharacters[sum % 11]
  }

  /// 110105 (Beijing Chaoyang) + 19900101 + a random 3-digit sequence + the check character.
  static func random() -> String {
    let prefix = "11010519900101" + zeroPadded(Int.random(in: 0...999), width: 3)
    // The prefix is 17 digits by construction, so the check character always exists.
    return prefix + String(checkCharacter(prefix) ?? "0")
  }
}

/// `n` in decimal, left-padded with zeros to `width` digits.
func zeroPadded(_ n: Int, width: Int) -> String {
  let digits = String(n)
  return String(repeating: "0", count: max(0, width - digits.count)) + digits
}
