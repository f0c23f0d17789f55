// The console's texts in English and Japanese, and the chosen language
// (kept in localStorage).

const T = {
  en: {
    logIn: 'Log in', logOut: 'Log out', signUp: 'Sign up', email: 'E-mail address', password: 'Password',
    passwordRule: 'Password (at least 10 characters)', noAccount: 'No account yet? Sign up', haveAccount: 'Have an account? Log in',
    checkMail: 'Check your mail: we sent a link to %s to verify the address. Then log in.',
    verify: 'Verify your address', verifying: 'Verifying…', verified: '%s is verified. You can log in now.',
    noToken: 'This link has no token: open the whole link from the mail.',
    invitation: 'Invitation', inviteText: 'Accept the invitation to join a tenant with this account.', accept: 'Accept',
    joined: 'You joined %s as %s.', openTenant: 'Open the tenant', logInToAccept: 'Log in (or sign up first) to accept the invitation.',
    tenants: 'Tenants', noTenants: 'You are not a member of any tenant yet: create one.', tenantName: 'Name of a new tenant',
    create: 'Create', allTenants: '← All tenants',
    domains: 'Domains', domainName: 'Domain name', domain: 'Domain', add: 'Add', delete: 'Delete', actions: 'Actions',
    dnsRecords: 'DNS records', dnsFor: 'DNS records for %s', dnsText: 'Publish these records at your DNS provider.',
    purpose: 'Purpose', type: 'Type', name: 'Name', value: 'Value', note: 'Note',
    mailUsers: 'Mail users', address: 'Address', admin: 'admin',
    members: 'Members', role: 'Role', state: 'State', invite: 'Invite', invited: 'invited', member: 'member',
    ROLE_OWNER: 'owner', ROLE_ADMIN: 'admin', ROLE_VIEWER: 'viewer',
    agents: 'Agents', newToken: 'Create an enrollment token',
    tokenOnce: 'The token enrolls one agent and is shown only now: copy it.', token: 'Token', expires: 'expires',
    runOnAgent: 'Run on the agent’s machine:', copy: 'Copy the command', copied: 'Copied.', selected: 'Selected: press Ctrl+C to copy.',
    hostname: 'Host', status: 'Status', version: 'Version', lastHeartbeat: 'Last heartbeat', health: 'Health',
    never: 'never', revoke: 'Revoke', noAgents: 'No agents yet: create a token and enroll one.',
    AGENT_STATUS_UP: 'up', AGENT_STATUS_DOWN: 'down', AGENT_STATUS_REVOKED: 'revoked',
    HEALTH_STATUS_OK: 'ok', HEALTH_STATUS_DEGRADED: 'degraded', HEALTH_STATUS_ERROR: 'error',
    confirmDelete: 'Delete %s?', confirmRevoke: 'Revoke agent %s? It stops at once.', sessionEnded: 'Your session has ended: log in again.',
    unreachable: 'The control plane did not answer: %s',
    billing: 'Billing', plan: 'Plan', plans: 'Plans', currentPlan: 'current', noLimit: 'no limit', ofLimit: '%s of %s',
    messagesThisMonth: 'Messages this month (in and out)', messagesMonth: 'Messages a month', upgrade: 'Upgrade',
    changeInPortal: 'This tenant has a subscription: change its plan with Manage billing.',
    portalText: 'Payment methods, invoices, plan changes and cancellation are in Stripe’s customer portal.', manageBilling: 'Manage billing',
    checkoutDone: 'Thank you. The new plan applies as soon as Stripe confirms the payment, usually within a minute.',
    usage: 'Usage', month: 'Month', messages: 'Messages', storage: 'Storage (GB-months)', noUsage: 'No usage yet.', toBilling: 'Go to Billing',
    pastDue: 'A payment failed. Update the payment method before %s or outbound mail will be paused; incoming mail keeps arriving.',
    pastDueSoon: 'A payment failed. Update the payment method soon or outbound mail will be paused; incoming mail keeps arriving.',
    restricted: 'Outbound mail is paused because the bill is unpaid. Incoming mail still arrives. Pay in the customer portal to resume.',
    held: 'Outbound mail is held: %s', noStripeURL: 'The control plane gave no address to open at Stripe: try again.',
    store: 'Store', storeText: 'Plugins for your MaiRust agents, each reviewed before it is listed.', searchPlugins: 'Search plugins',
    search: 'Search', noPluginsListed: 'No plugins are listed yet.', noMatch: 'No plugins match “%s”.', allPlugins: '← All plugins',
    versionBy: 'Version %s · by %s', byDeveloper: 'by %s', about: 'About', permissions: 'Permissions', permsOf: 'Version %s',
    mayIntro: 'This plugin may:', install: 'Install on my agents', logInToInstall: 'Log in to install this plugin on your agents',
    noAdminTenant: 'To install a plugin you must be an owner or admin of a tenant.', tenant: 'Tenant',
    acceptPerms: 'I accept these permissions', acceptFirst: 'Tick “I accept these permissions” to install the plugin.',
    installed: 'Installed %s — your agents install it within seconds.', versions: 'Versions', approved: 'Approved',
    minMairust: 'Needs MaiRust', anyVersion: 'any', review: 'Review', download: 'Download', downloadFile: 'Package',
    noFindings: 'no findings', reviewOne: '1 finding (%s)', reviewMany: '%s findings, most serious %s',
    sev_high: 'high', sev_medium: 'medium', sev_info: 'info',
    plugins: 'Plugins', plugin: 'Plugin', noPlugins: 'No plugins installed.', toStore: 'Find plugins in the store',
    enabled: 'enabled', disabled: 'disabled', uninstall: 'Uninstall', confirmUninstall: 'Uninstall %s from this tenant’s agents?',
    myPlugins: 'My plugins', submitVersion: 'Submit a version', packageFile: 'Package (.mairust-plugin)', submit: 'Submit',
    developerText: 'Submit your plugin as the package mairust plugin pack makes (a .mairust-plugin file). It is reviewed automatically at once, then by a reviewer before the store lists it.',
    chooseFile: 'Choose the .mairust-plugin file to submit.', submittedAs: 'Submitted %s %s: %s.', packageWarnings: 'Warnings about the package',
    autoReview: 'Automatic review', mySubmissions: 'My submissions', noSubmissions: 'You have not submitted a plugin yet.',
    state_pending: 'pending review', state_approved: 'approved', state_rejected: 'rejected',
    submittedOn: 'submitted %s', reviewedOn: 'reviewed %s', reviewerNote: 'Reviewer’s note:', details: 'Details', hideDetails: 'Hide details',
    needsMairust: 'Needs MaiRust: %s', sevGroup: 'Severity %s (%s)',
    reviewTitle: 'Waiting for review', noPending: 'Nothing is waiting for review.',
    reviewText: 'Oldest first. Approving countersigns the package and lists it in the store; rejecting needs a note, which the developer reads.',
    developer: 'Developer', submitted: 'Submitted', noteToDeveloper: 'Note to the developer (needed to reject)',
    approve: 'Approve', reject: 'Reject', approvedDone: 'Approved %s %s: the store lists it now.', rejectedDone: 'Rejected %s %s: the developer sees your note.',
  },
  ja: {
    logIn: 'ログイン', logOut: 'ログアウト', signUp: 'アカウント登録', email: 'メールアドレス', password: 'パスワード',
    passwordRule: 'パスワード（10 文字以上）', noAccount: 'アカウントがない場合は登録', haveAccount: 'アカウントをお持ちの場合はログイン',
    checkMail: '%s に確認用のリンクを送りました。メールを確認してからログインしてください。',
    verify: 'メールアドレスの確認', verifying: '確認しています…', verified: '%s を確認しました。ログインできます。',
    noToken: 'リンクにトークンがありません。メールのリンクをそのまま開いてください。',
    invitation: '招待', inviteText: 'このアカウントでテナントへの招待を受け入れます。', accept: '受け入れる',
    joined: '%s に %s として参加しました。', openTenant: 'テナントを開く', logInToAccept: '招待を受け入れるにはログイン（または先にアカウント登録）してください。',
    tenants: 'テナント', noTenants: 'まだどのテナントにも所属していません。作成してください。', tenantName: '新しいテナントの名前',
    create: '作成', allTenants: '← テナント一覧',
    domains: 'ドメイン', domainName: 'ドメイン名', domain: 'ドメイン', add: '追加', delete: '削除', actions: '操作',
    dnsRecords: 'DNS レコード', dnsFor: '%s の DNS レコード', dnsText: '以下のレコードを DNS プロバイダに登録してください。',
    purpose: '用途', type: '種類', name: '名前', value: '値', note: '注記',
    mailUsers: 'メールユーザー', address: 'アドレス', admin: '管理者',
    members: 'メンバー', role: '役割', state: '状態', invite: '招待', invited: '招待中', member: 'メンバー',
    ROLE_OWNER: 'オーナー', ROLE_ADMIN: '管理者', ROLE_VIEWER: '閲覧者',
    agents: 'エージェント', newToken: '登録トークンを作成',
    tokenOnce: 'このトークンでエージェントを 1 台登録できます。今だけ表示されるのでコピーしてください。', token: 'トークン', expires: '有効期限',
    runOnAgent: 'エージェントのマシンで実行してください:', copy: 'コマンドをコピー', copied: 'コピーしました。', selected: '選択しました。Ctrl+C でコピーしてください。',
    hostname: 'ホスト', status: '状態', version: 'バージョン', lastHeartbeat: '最終ハートビート', health: 'ヘルス',
    never: 'なし', revoke: '取り消す', noAgents: 'エージェントはまだありません。トークンを作成して登録してください。',
    AGENT_STATUS_UP: '稼働中', AGENT_STATUS_DOWN: '停止', AGENT_STATUS_REVOKED: '取り消し済み',
    HEALTH_STATUS_OK: '正常', HEALTH_STATUS_DEGRADED: '低下', HEALTH_STATUS_ERROR: 'エラー',
    confirmDelete: '%s を削除しますか？', confirmRevoke: 'エージェント %s を取り消しますか？すぐに停止します。', sessionEnded: 'セッションが終了しました。もう一度ログインしてください。',
    unreachable: 'コントロールプレーンが応答しません: %s',
    billing: '請求', plan: 'プラン', plans: 'プラン一覧', currentPlan: '現在のプラン', noLimit: '無制限', ofLimit: '%s / %s',
    messagesThisMonth: '今月のメッセージ数（送受信）', messagesMonth: '月間メッセージ数', upgrade: 'アップグレード',
    changeInPortal: 'このテナントは契約中です。プランの変更は「請求を管理」から行ってください。',
    portalText: '支払い方法、請求書、プランの変更と解約は Stripe のカスタマーポータルで行えます。', manageBilling: '請求を管理',
    checkoutDone: 'ありがとうございます。Stripe が支払いを確認すると（通常 1 分以内）新しいプランが適用されます。',
    usage: '使用量', month: '月', messages: 'メッセージ数', storage: 'ストレージ（GB 月）', noUsage: '使用量はまだありません。', toBilling: '請求へ',
    pastDue: '支払いに失敗しました。%s までに支払い方法を更新しないと送信メールが停止されます。受信メールは引き続き届きます。',
    pastDueSoon: '支払いに失敗しました。早めに支払い方法を更新しないと送信メールが停止されます。受信メールは引き続き届きます。',
    restricted: '請求が未払いのため送信メールを停止しています。受信メールは引き続き届きます。カスタマーポータルで支払うと再開します。',
    held: '送信メールを保留しています: %s', noStripeURL: 'コントロールプレーンから Stripe の開き先が返されませんでした。もう一度お試しください。',
    store: 'ストア', storeText: 'MaiRust エージェント用のプラグインです。どれも審査を経て掲載されています。', searchPlugins: 'プラグインを検索',
    search: '検索', noPluginsListed: '掲載中のプラグインはまだありません。', noMatch: '「%s」に一致するプラグインはありません。', allPlugins: '← プラグイン一覧',
    versionBy: 'バージョン %s · 開発者 %s', byDeveloper: '開発者: %s', about: '説明', permissions: '権限', permsOf: 'バージョン %s',
    mayIntro: 'このプラグインは次のことができます:', install: 'エージェントにインストール', logInToInstall: 'ログインしてこのプラグインをエージェントにインストール',
    noAdminTenant: 'プラグインをインストールするには、テナントのオーナーか管理者である必要があります。', tenant: 'テナント',
    acceptPerms: 'これらの権限を承認します', acceptFirst: 'インストールするには「これらの権限を承認します」にチェックを入れてください。',
    installed: '%s をインストールしました。数秒以内にエージェントに導入されます。', versions: 'バージョン履歴', approved: '承認日',
    minMairust: '必要な MaiRust', anyVersion: '指定なし', review: '審査', download: 'ダウンロード', downloadFile: 'パッケージ',
    noFindings: '指摘なし', reviewOne: '指摘 1 件（%s）', reviewMany: '指摘 %s 件（最も重大: %s）',
    sev_high: '高', sev_medium: '中', sev_info: '情報',
    plugins: 'プラグイン', plugin: 'プラグイン', noPlugins: 'インストール済みのプラグインはありません。', toStore: 'ストアでプラグインを探す',
    enabled: '有効', disabled: '無効', uninstall: 'アンインストール', confirmUninstall: '%s をこのテナントのエージェントからアンインストールしますか？',
    myPlugins: 'マイプラグイン', submitVersion: 'バージョンを申請', packageFile: 'パッケージ（.mairust-plugin）', submit: '申請',
    developerText: 'mairust plugin pack で作ったパッケージ（.mairust-plugin ファイル）でプラグインを申請します。すぐに自動審査が行われ、審査担当者の承認を経てストアに掲載されます。',
    chooseFile: '申請する .mairust-plugin ファイルを選んでください。', submittedAs: '%s %s を申請しました: %s。', packageWarnings: 'パッケージについての警告',
    autoReview: '自動審査', mySubmissions: '申請一覧', noSubmissions: 'まだプラグインを申請していません。',
    state_pending: '審査待ち', state_approved: '承認済み', state_rejected: '却下',
    submittedOn: '申請日時 %s', reviewedOn: '審査日時 %s', reviewerNote: '審査担当者のコメント:', details: '詳細', hideDetails: '詳細を閉じる',
    needsMairust: '必要な MaiRust: %s', sevGroup: '重大度 %s（%s 件）',
    reviewTitle: '審査待ちの申請', noPending: '審査待ちの申請はありません。',
    reviewText: '古い順に表示します。承認するとパッケージに署名してストアに掲載します。却下するには開発者に伝えるコメントが必要です。',
    developer: '開発者', submitted: '申請日時', noteToDeveloper: '開発者へのコメント（却下には必須）',
    approve: '承認', reject: '却下', approvedDone: '%s %s を承認しました。ストアに掲載されました。', rejectedDone: '%s %s を却下しました。開発者にコメントが表示されます。',
  },
};

export let lang = localStorage.getItem('lang') || (navigator.language.startsWith('ja') ? 'ja' : 'en');

// t returns the text for key, each %s replaced by the next argument.
export function t(key, ...args) {
  let i = 0;
  return (T[lang][key] || key).replace(/%s/g, () => String(args[i++] ?? ''));
}

// apply puts the texts into the elements marked with data-t.
export function apply() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
  document.getElementById('lang').textContent = lang === 'ja' ? 'English' : '日本語';
}

// toggle switches between the two languages.
export function toggle() {
  lang = lang === 'ja' ? 'en' : 'ja';
  localStorage.setItem('lang', lang);
  apply();
}
