/// The HTTP listener's own routes: what probes and scrapers need, beside the gRPC health service.
enum OperationalRoutes {
  /// - `GET /livez`: 200 while the process runs and its listener answers (a liveness probe:
  ///   restart the node only when this fails).
  /// - `GET /readyz` and `GET /healthz` (the same): 200 `{"status":"SERVING"}`, or 503
  ///   `{"status":"NOT_SERVING","reason":…}` while the database does not answer or once graceful
  ///   shutdown began, so a load balancer sends work elsewhere (readiness).
  /// - `GET /metrics`: Prometheus text exposition.
  static func make(health: HealthService, metrics: ServerMetrics) -> [HTTPRoute] {
    let ready: @Sendable (HTTPRequestData) async -> HTTPResponseData = { _ in
      guard let obstacle = health.obstacle else { return .json(200, ["status": "SERVING"]) }
      return .json(503, ["status": "NOT_SERVING", "reason": obstacle.rawValue])
    }
    return [
      HTTPRoute(method: "GET", path: "/livez") { _ in .json(200, ["status": "ALIVE"]) },
      HTTPRoute(method: "GET", path: "/readyz", handler: ready),
      HTTPRoute(method: "GET", path: "/healthz", handler: ready),
      HTTPRoute(method: "GET", path: "/metrics") { _ in
        HTTPResponseData(
          status: 200, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"], body: metrics.exposition())
      },
    ]
  }
}
