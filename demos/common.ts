// Shared by every demo page: the environment check (cross-origin isolation for the
// SharedArrayBuffer behind system RAM, and WebGPU), showing a demo's own WGSL source, the
// final result line a test reads (#result, with data-status), and errors in words.

export interface EnvProblem {
  title: string;
  detail: string;
}

/** What keeps webgpu-hmm from running on this page, if anything. */
export function environmentProblems(): EnvProblem[] {
  const problems: EnvProblem[] = [];
  if (!globalThis.crossOriginIsolated) {
    problems.push({
      title: 'This page is not cross-origin isolated.',
      detail:
        'System RAM is a SharedArrayBuffer, which browsers allow only when the page is served with ' +
        '"Cross-Origin-Opener-Policy: same-origin" and "Cross-Origin-Embedder-Policy: require-corp". ' +
        'Serve the demos with `npm start` (Vite sends both headers), or configure your server to send them.',
    });
  }
  if (!('gpu' in navigator) || !navigator.gpu) {
    problems.push({
      title: 'WebGPU is not available (navigator.gpu is missing).',
      detail:
        'Use a browser with WebGPU, such as a recent Chrome or Edge, on a secure context (https or localhost). ' +
        'Chromium on Linux may need --enable-unsafe-webgpu.',
    });
  }
  return problems;
}

/** Show problems in #env; true when the page can run. */
export function checkEnvironment(): boolean {
  const problems = environmentProblems();
  const box = document.getElementById('env');
  if (box) {
    box.replaceChildren();
    box.className = problems.length ? 'env env-bad' : 'env env-ok';
    if (problems.length === 0) {
      box.textContent = 'Cross-origin isolated, WebGPU available.';
    } else {
      for (const p of problems) {
        const h = document.createElement('strong');
        h.textContent = p.title;
        const d = document.createElement('p');
        d.textContent = p.detail;
        box.append(h, d);
      }
    }
  }
  return problems.length === 0;
}

export type ResultStatus = 'running' | 'pass' | 'fail' | 'error';

/** The final line of a demo: #result holds the text, data-status says how it ended. */
export function setResult(text: string, status: ResultStatus): void {
  const el = document.getElementById('result');
  if (!el) return;
  el.textContent = text;
  el.dataset.status = status;
}

/** Show a source file on the page, as webgpu-samples do. */
export function showSource(name: string, code: string): void {
  const host = document.getElementById('sources');
  if (!host) return;
  const details = document.createElement('details');
  details.open = true;
  const summary = document.createElement('summary');
  summary.textContent = name;
  const pre = document.createElement('pre');
  const codeEl = document.createElement('code');
  codeEl.textContent = code.trimEnd();
  pre.append(codeEl);
  details.append(summary, pre);
  host.append(details);
}

/** Any error that escapes a demo still ends the page with a readable #result. */
export function reportUnhandledErrors(): void {
  const show = (e: unknown): void => {
    console.error(e);
    setResult(`error: ${describeError(e)}`, 'error');
  };
  addEventListener('error', (ev) => show(ev.error ?? ev.message));
  addEventListener('unhandledrejection', (ev) => show(ev.reason));
}

export function describeError(e: unknown): string {
  // An HmmError's message starts with its code already ("EINVAL: ..."); other coded errors may not.
  if (e && typeof e === 'object' && 'code' in e && 'message' in e) {
    const code = String(e.code);
    const message = String(e.message);
    return message.startsWith(`${code}: `) ? message : `${code}: ${message}`;
  }
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}
