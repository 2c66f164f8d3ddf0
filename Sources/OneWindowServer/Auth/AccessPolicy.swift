import GRPCCore
import OneWindowAPI
import OneWindowCore

/// Who may call an RPC. Checked by `AuthInterceptor` before any handler runs.
public enum Access: Sendable, Equatable {
  /// No login needed (a valid token, if sent, is still resolved).
  case `public`
  /// Any logged-in account.
  case authenticated
  /// Logged in with one of these roles.
  case roles(Set<Role>)
}

/// The one place that says which RPCs are public and which roles may call the rest. A method
/// missing from this table is refused for everyone (secure by default); a test checks that every
/// registered method is listed. Ownership (a citizen only sees their own data) is checked in the
/// services, since it depends on the data.
public enum AccessPolicy {
  typealias Identity = Onewindow_V1_IdentityService.Method
  typealias Catalog = Onewindow_V1_CatalogService.Method
  typealias Health = Grpc_Health_V1_Health.Method
  typealias Sync = Onewindow_V1_SyncService.Method
  typealias Cases = Onewindow_V1_CaseService.Method
  typealias Materials = Onewindow_V1_MaterialService.Method
  typealias Certificates = Onewindow_V1_CertificateService.Method
  typealias Evaluations = Onewindow_V1_EvaluationService.Method
  typealias Payments = Onewindow_V1_PaymentService.Method
  typealias Audit = Onewindow_V1_AuditService.Method
  typealias Inbox = Onewindow_V1_InboxService.Method
  typealias Notify = Onewindow_V1_NotifyService.Method
  static let applicants: Access = .roles([.citizen, .enterprise])
  static let staff: Access = .roles([.caseworker, .admin])

  static let admin: Access = .roles([.admin])

  public static let table: [String: Access] = {
    var t: [MethodDescriptor: Access] = [
      Health.Check.descriptor: .public,
      Health.Watch.descriptor: .public,

      Identity.RegisterCitizen.descriptor: .public,
      Identity.RegisterEnterprise.descriptor: .roles([.citizen]),
      Identity.RequestLoginCode.descriptor: .public,
      Identity.LoginWithCode.descriptor: .public,
      Identity.LoginWithPassword.descriptor: .public,
      Identity.Refresh.descriptor: .public,
      Identity.Logout.descriptor: .authenticated,
      Identity.WhoAmI.descriptor: .authenticated,
      Identity.ChangePassword.descriptor: .authenticated,
      Identity.VerifyIdentity.descriptor: admin,
      Identity.CreateStaffAccount.descriptor: admin,
      Identity.GetAccount.descriptor: .authenticated,
      Identity.MoveCaseworker.descriptor: admin,

      Catalog.ListDepartments.descriptor: .public,
      Catalog.UpsertDepartment.descriptor: admin,
      Catalog.ListItems.descriptor: .public,
      Catalog.GetItem.descriptor: .public,
      Catalog.SearchItems.descriptor: .public,
      Catalog.CreateItem.descriptor: admin,
      Catalog.UpdateItem.descriptor: admin,
      Catalog.PublishItem.descriptor: admin,
      Catalog.WithdrawItem.descriptor: admin,

      // Audience and ownership are enforced per record by the sync write rules.
      Sync.ListCollections.descriptor: .authenticated,
      Sync.Pull.descriptor: .authenticated,
      Sync.Push.descriptor: .authenticated,
      Sync.Watch.descriptor: .authenticated,
      Sync.Verify.descriptor: .authenticated,
      Sync.ListConflicts.descriptor: .authenticated,
      Sync.ResolveConflict.descriptor: .authenticated,

      // Case ownership and step routing are checked per case by CaseWorkflow.involvement.
      Cases.SubmitCase.descriptor: applicants,
      Cases.GetCase.descriptor: .authenticated,
      Cases.ListMyCases.descriptor: applicants,
      Cases.ActOnCase.descriptor: .authenticated,
      Cases.ListQueue.descriptor: staff,
      Cases.TrackCase.descriptor: .public,
      Cases.ListCaseAccess.descriptor: applicants,
      Materials.UploadMaterial.descriptor: .authenticated,
      Materials.DownloadMaterial.descriptor: .authenticated,
      Certificates.GetIssuerKeys.descriptor: .public,
      Certificates.VerifyCertificate.descriptor: .public,
      Certificates.ListMyCertificates.descriptor: applicants,
      Certificates.GetCertificate.descriptor: .authenticated,
      Certificates.RevokeCertificate.descriptor: staff,
      Evaluations.RateCase.descriptor: applicants,
      Evaluations.GetEvaluation.descriptor: .authenticated,
      Evaluations.ListRectifications.descriptor: staff,
      Evaluations.RespondToEvaluation.descriptor: .roles([.caseworker]),
      Evaluations.AppealEvaluation.descriptor: .roles([.caseworker]),
      Evaluations.ReviewAppeal.descriptor: admin,
      Evaluations.GetEvaluationStats.descriptor: .public,
      Audit.VerifyAuditChain.descriptor: admin,
      Audit.ListAuditEntries.descriptor: admin,

      // Every inbox RPC acts on the caller's own account only.
      Inbox.Subscribe.descriptor: .authenticated,
      Inbox.Ack.descriptor: .authenticated,
      Inbox.ListInbox.descriptor: .authenticated,
      Inbox.MarkRead.descriptor: .authenticated,
      Inbox.DeleteMessages.descriptor: .authenticated,
      Inbox.ListTopics.descriptor: .authenticated,
      Inbox.SubscribeTopic.descriptor: .authenticated,
      Inbox.UnsubscribeTopic.descriptor: .authenticated,
      Inbox.ListTopicMessages.descriptor: .authenticated,
      Notify.Publish.descriptor: admin,
      Notify.CancelPublication.descriptor: admin,
      Notify.GetPublication.descriptor: admin,
      Notify.ListPublications.descriptor: admin,
      Notify.PutTemplate.descriptor: admin,
      Notify.ListTemplates.descriptor: admin,
      Notify.GetTemplate.descriptor: admin,
      Notify.CreateTopic.descriptor: admin,
      Notify.AddWebhook.descriptor: admin,
      Notify.ListWebhooks.descriptor: admin,
      Notify.SetWebhookEnabled.descriptor: admin,
      Notify.ListDeliveries.descriptor: admin,
      Notify.ReplayDelivery.descriptor: admin,

      // Ownership (applicants) and department (caseworkers) are checked per order and payment.
      Payments.CreateOrder.descriptor: .authenticated,
      Payments.GetOrder.descriptor: .authenticated,
      Payments.ListOrders.descriptor: .authenticated,
      Payments.AdjustFee.descriptor: .roles([.caseworker]),
      Payments.CreatePayment.descriptor: applicants,
      Payments.GetPayment.descriptor: .authenticated,
      Payments.CancelPayment.descriptor: applicants,
      Payments.Refund.descriptor: staff,
      Payments.GetReceipt.descriptor: .authenticated,
      Payments.VerifyReceipt.descriptor: .public,
      Payments.Reconcile.descriptor: admin,
      Payments.CheckLedger.descriptor: admin,
    ]
    return Dictionary(uniqueKeysWithValues: t.map { ($0.key.fullyQualifiedMethod, $0.value) })
  }()

  public static func access(for method: MethodDescriptor) -> Access? {
    table[method.fullyQualifiedMethod]
  }
}
