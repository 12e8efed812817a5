/**
 * The one wait for "stop now" shared by every long-running command (`membrane up` without an
 * application, `membrane proxy http`, `membrane emulators start`): SIGTERM or SIGINT, or an
 * abort of `stop` (e.g. the audit log failed). Listeners are removed once it resolves, so a
 * later signal reaches whatever handles it next.
 */
export function waitForStopSignal(stop?: AbortSignal, abortReason = 'aborted'): Promise<string> {
  return new Promise((resolvePromise) => {
    const finish = (why: string) => {
      process.off('SIGTERM', term);
      process.off('SIGINT', int);
      stop?.removeEventListener('abort', onStop);
      resolvePromise(why);
    };
    const on = (sig: NodeJS.Signals) => () => finish(`received ${sig}`);
    const term = on('SIGTERM');
    const int = on('SIGINT');
    const onStop = () => finish(abortReason);
    process.on('SIGTERM', term);
    process.on('SIGINT', int);
    stop?.addEventListener('abort', onStop, { once: true });
  });
}
