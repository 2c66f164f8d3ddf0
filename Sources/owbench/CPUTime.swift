import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CPU time of processes from `/proc/PID/stat` (Linux), in clock ticks.
enum ProcCPU {
  /// `sysconf(_SC_CLK_TCK)`: the unit of the times in /proc/PID/stat (100 on Linux).
  static let ticksPerSecond: Double = {
    let ticks = sysconf(Int32(_SC_CLK_TCK))
    return ticks > 0 ? Double(ticks) : 100
  }()

  struct Times: Sendable {
    /// utime + stime.
    var own: UInt64
    /// cutime + cstime: the CPU time of children the process has waited for.
    var children: UInt64
  }

  /// The process's CPU times; nil when it is gone or /proc is unreadable.
  static func times(pid: Int32) -> Times? {
    guard let text = ProcStatus.readProcFile("/proc/\(pid)/stat"),
      let paren = text.lastIndex(of: ")")  // the command name (field 2) may hold spaces and parentheses
    else { return nil }
    // After the name: field 3 (state) is index 0, so utime (14) is 11, stime 12, cutime 13, cstime 14.
    let fields = text[text.index(after: paren)...].split(separator: " ")
    guard fields.count > 14, let utime = UInt64(fields[11]), let stime = UInt64(fields[12]),
      let cutime = Int64(fields[13]), let cstime = Int64(fields[14])
    else { return nil }
    return Times(own: utime + stime, children: UInt64(max(0, cutime)) + UInt64(max(0, cstime)))
  }

  /// The processes whose `/proc/PID/comm` is `postgres` (the postmaster, its backends and workers).
  static func postgresPIDs() -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { name -> Int32? in
      guard let pid = Int32(name),
        let comm = ProcStatus.readProcFile("/proc/\(pid)/comm"),
        comm.trimmingCharacters(in: .whitespacesAndNewlines) == "postgres"
      else { return nil }
      return pid
    }
  }
}

/// What owbench reads at the start and at the end of a scenario's measured window.
struct CPUProbe: Sendable {
  /// The OneWindow server; nil when its pid is unknown.
  var serverPID: Int32?
  /// Further nodes of the same server (several nodes on one database): their CPU is added.
  var otherServerPIDs: [Int32] = []
  /// Also sum every `postgres` process on this machine.
  var postgres: Bool

  struct Snapshot: Sendable {
    var server: UInt64?
    var postgres: [Int32: ProcCPU.Times] = [:]
  }

  func snapshot() -> Snapshot {
    var snapshot = Snapshot(server: serverPID.flatMap { first in
      ([first] + otherServerPIDs).reduce(UInt64?(0)) { sum, pid in
        guard let sum, let own = ProcCPU.times(pid: pid)?.own else { return nil }
        return sum + own
      }
    })
    if postgres {
      for pid in ProcCPU.postgresPIDs() {
        if let times = ProcCPU.times(pid: pid) { snapshot.postgres[pid] = times }
      }
    }
    return snapshot
  }

  /// CPU seconds between two snapshots. PostgreSQL: each process's own time in the window (all
  /// of it for one that started there), plus what the processes reaped from exited children
  /// (cutime + cstime) minus those children's time before the window.
  func window(from start: Snapshot, to end: Snapshot) -> CPUWindow {
    var window = CPUWindow()
    if let a = start.server, let b = end.server, b >= a {
      window.serverSeconds = Double(b - a) / ProcCPU.ticksPerSecond
    }
    if postgres, !end.postgres.isEmpty {
      var ticks: Int64 = 0
      for (pid, b) in end.postgres {
        let a = start.postgres[pid]
        // A smaller count than before means the pid was reused: a new process.
        ticks += Int64(b.own) - Int64(a.map { $0.own <= b.own ? $0.own : 0 } ?? 0)
        ticks += Int64(b.children) - Int64(a.map { $0.children <= b.children ? $0.children : 0 } ?? 0)
      }
      for (pid, a) in start.postgres where end.postgres[pid] == nil {
        ticks -= Int64(a.own + a.children)
      }
      window.postgresSeconds = Double(max(0, ticks)) / ProcCPU.ticksPerSecond
      window.postgresProcesses = end.postgres.count
    }
    return window
  }
}

/// CPU seconds spent during one measured window.
struct CPUWindow: Sendable {
  var serverSeconds: Double?
  var postgresSeconds: Double?
  /// `postgres` processes alive at the end of the window.
  var postgresProcesses: Int?
}
