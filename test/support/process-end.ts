// Cleanup that must happen however the test process ends: on exit, and on SIGTERM or SIGINT
// (tap's timeout, ^C), which would otherwise end it without 'exit' handlers running their course.
export function atProcessEnd(cleanup: () => void): void {
  process.once('exit', cleanup);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      cleanup();
      process.exit(128 + (signal === 'SIGTERM' ? 15 : 2));
    });
  }
}
