// The Inspector webview's page. Everything shown comes from the extension, already redacted;
// it is written with textContent only (a client name or a body is never HTML).
// @ts-check
(function () {
  // eslint-disable-next-line no-undef
  const vscode = acquireVsCodeApi();
  /** @type {Array<Record<string, any>>} */
  let calls = [];
  let max = 500;
  /** @type {string | undefined} */
  let selected;
  const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
  const tbody = /** @type {HTMLElement} */ (document.querySelector('#calls tbody'));
  const filter = /** @type {HTMLInputElement} */ ($('filter'));
  const errorsOnly = /** @type {HTMLInputElement} */ ($('errors'));

  const what = (c) => c.method ?? c.http_method;
  const outcome = (c) => (c.error_code !== null ? `error ${c.error_code}` : c.tool_error ? 'tool error' : String(c.status));
  const failed = (c) => c.error_code !== null || c.tool_error || c.status >= 400;
  const bytes = (n) => (n >= 1024 * 1024 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KB` : `${n} B`);
  const time = (at) => new Date(at).toLocaleTimeString();
  // Cloudflare's word on the client, when cloudflared said it; a local process is named as such.
  const from = (c) => (c.from_tunnel === false ? 'this machine (not through the tunnel)' : [c.country, c.remote_ip].filter(Boolean).join(' · ') + (c.from_tunnel === null && (c.country || c.remote_ip) ? ' (unverified)' : ''));

  function matches(c) {
    if (errorsOnly.checked && !failed(c)) return false;
    const q = filter.value.trim().toLowerCase();
    if (!q) return true;
    const hay = [what(c), c.name, outcome(c), String(c.status), c.link, c.client, c.country, c.remote_ip].filter(Boolean).join(' ').toLowerCase();
    return q.split(/\s+/).every((w) => hay.includes(w));
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text ?? '';
    if (cls) td.className = cls;
    td.title = text ?? '';
    tr.appendChild(td);
  }

  function row(c) {
    const tr = document.createElement('tr');
    tr.dataset.id = c.id;
    tr.tabIndex = 0;
    if (c.id === selected) tr.className = 'selected';
    // The most telling first: a narrow editor cuts the last columns.
    cell(tr, time(c.at));
    cell(tr, [what(c), c.name].filter(Boolean).join(' '), 'call');
    cell(tr, outcome(c), failed(c) ? 'bad' : '');
    cell(tr, c.duration_ms < 10 ? c.duration_ms.toFixed(1) : String(Math.round(c.duration_ms)), 'num');
    cell(tr, c.client ?? 'unknown client');
    cell(tr, from(c));
    cell(tr, c.link);
    cell(tr, `${bytes(c.bytes_in)} / ${bytes(c.bytes_out)}`, 'num');
    return tr;
  }

  function render() {
    const shown = calls.filter(matches);
    const frag = document.createDocumentFragment();
    // Newest first.
    for (let i = shown.length - 1; i >= 0; i--) frag.appendChild(row(shown[i]));
    tbody.replaceChildren(frag);
    $('empty').hidden = calls.length > 0;
    $('count').textContent = calls.length === 0 ? '' : shown.length === calls.length ? `${calls.length} call${calls.length === 1 ? '' : 's'} (last ${max} kept)` : `${shown.length} of ${calls.length} calls`;
  }

  function pretty(body) {
    if (body === null || body === undefined) return '(not kept)';
    try {
      return JSON.stringify(JSON.parse(body), null, 2);
    } catch {
      return body;
    }
  }

  function fact(dl, k, v) {
    if (v === null || v === undefined || v === '') return;
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = String(v);
    dl.append(dt, dd);
  }

  function showDetail() {
    const c = calls.find((x) => x.id === selected);
    $('detail').hidden = !c;
    if (!c) return;
    const dl = $('facts');
    dl.replaceChildren();
    fact(dl, 'When', new Date(c.at).toLocaleString());
    fact(dl, 'Call', [what(c), c.name].filter(Boolean).join(' '));
    fact(dl, 'Outcome', `${outcome(c)} (HTTP ${c.status})${c.events !== null ? `, ${c.events} SSE event${c.events === 1 ? '' : 's'}` : ''}`);
    fact(dl, 'Client', c.client ?? 'unknown client');
    fact(dl, 'Link', c.link);
    fact(dl, 'From', from(c));
    fact(dl, 'Session', c.session);
    fact(dl, 'Duration', `${c.duration_ms} ms`);
    fact(dl, 'Bytes', `${c.bytes_in} in / ${c.bytes_out} out`);
    if (c.header_mismatch) fact(dl, 'Warning', 'The Mcp-Method / Mcp-Name headers disagree with the body.');
    $('req').textContent = pretty(c.request_body) + (c.request_truncated_from !== null ? `\n… cut (${c.request_truncated_from} bytes in all)` : '');
    $('res').textContent = pretty(c.response_body) + (c.response_truncated_from !== null ? `\n… cut (${c.response_truncated_from} bytes in all)` : '');
  }

  function select(id) {
    selected = id;
    for (const tr of tbody.children) tr.classList.toggle('selected', /** @type {HTMLElement} */ (tr).dataset.id === id);
    showDetail();
  }

  tbody.addEventListener('click', (e) => {
    const tr = /** @type {HTMLElement} */ (e.target).closest('tr');
    if (tr?.dataset.id) select(tr.dataset.id);
  });
  tbody.addEventListener('keydown', (e) => {
    const tr = /** @type {HTMLElement} */ (e.target).closest('tr');
    if (!tr) return;
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      if (tr.dataset.id) select(tr.dataset.id);
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const next = /** @type {HTMLElement | null} */ (e.key === 'ArrowDown' ? tr.nextElementSibling : tr.previousElementSibling);
      next?.focus();
    }
  });
  filter.addEventListener('input', render);
  errorsOnly.addEventListener('change', render);
  $('curl').addEventListener('click', () => vscode.postMessage({ type: 'copyCurl', id: selected, withSecret: false }));
  $('curlSecret').addEventListener('click', () => vscode.postMessage({ type: 'copyCurl', id: selected, withSecret: true }));
  $('copyReq').addEventListener('click', () => vscode.postMessage({ type: 'copyJson', id: selected, which: 'request' }));
  $('copyRes').addEventListener('click', () => vscode.postMessage({ type: 'copyJson', id: selected, which: 'response' }));

  function setShare(s) {
    $('meta').textContent = [s.access === 'open' ? 'open share' : 'secret share', s.policy ? (s.policy === 'no tools' ? 'no tools shared' : `shares ${s.policy} only`) : 'every tool shared', s.running ? '' : 'stopped'].filter(Boolean).join(' · ');
    $('curlSecret').hidden = s.access === 'open';
  }

  window.addEventListener('message', (e) => {
    const m = e.data;
    if (m.type === 'init') {
      calls = m.calls;
      max = m.max || max;
      setShare(m.share);
      render();
      showDetail();
    } else if (m.type === 'calls') {
      calls.push(...m.calls);
      if (calls.length > max) calls.splice(0, calls.length - max);
      render();
    } else if (m.type === 'share') {
      setShare(m.share);
    }
  });
  vscode.postMessage({ type: 'ready' });
})();
