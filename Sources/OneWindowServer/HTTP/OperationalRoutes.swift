/// The HTTP listener's own routes: what probes and scrapers need, beside the gRPC health service.
enum OperationalRoutes {
  /// `GET /healthz` (200 `{"status":"SERVING"}`, or 503 `{"status":"NOT_SERVING"}` once graceful
  /// shutdown began, so a load balancer stops sending work while in-flight calls drain) and
  /// `GET /metrics` (Prometheus text exposition).
  static func make(health: HealthService, metrics: ServerMetrics) -> [HTTPRoute] {
    [
      HTTPRoute(method: "GET", path: "/healthz") { _ in
        health.isServing ? .json(200, ["status": "SERVING"]) : .json(503, ["status": "NOT_SERVING"])
      },
      HTTPRoute(method: "GET", path: "/metrics") { _ in
        HTTPResponseData(
          status: 200, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"], body: metrics.exposition())
      },
    ]
  }
}
