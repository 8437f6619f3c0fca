// The built aggregator as a process, for the tests that treat it as a black box: started with an
// environment, found by the "Server listening at" line it logs, read over HTTP, its JSON log
// lines kept, and killed at the end whatever happens.
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'undici';
import { answerOf } from '../../aggregator/answer.js';
import { AGGREGATOR_BIN, aggregatorNodeFlags } from './fixtures.js';
import { logCaughtUp } from './log-caught-up.js';

export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

export class AggregatorProcess {
  readonly lines: string[] = [];
  base = '';
  private stderr = '';
  readonly exited: Promise<number | null>;
  private readonly dispatcher: Agent;
  private stopping: Promise<number | null> | undefined;

  // The bearer token GETs send when the call names none (a reader's, where reads are checked).
  readToken: string | undefined;

  private constructor(
    readonly child: ChildProcess,
    ca?: string,
  ) {
    this.dispatcher = new Agent(ca ? { connect: { ca } } : {});
    let carry = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const parts = (carry + d).split('\n');
      carry = parts.pop() ?? '';
      this.lines.push(...parts);
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      if (this.stderr.length < 16_384) this.stderr += d;
    });
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** Starts the aggregator on 127.0.0.1 with a free port; `ca` trusts its HTTPS certificate. */
  static async start(env: Record<string, string>, options: { ca?: string; startSeconds?: number; readToken?: string } = {}): Promise<AggregatorProcess> {
    // Under tap, every child gets tap's module hooks in NODE_OPTIONS (@tapjs/processinfo: a hooks
    // thread, about 150 MiB of RSS): env(1) drops them, so the aggregator runs, and measures, as
    // it ships.
    const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, ...aggregatorNodeFlags(), AGGREGATOR_BIN], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', PORT: '0', HOST: '127.0.0.1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const proc = new AggregatorProcess(child, options.ca);
    proc.readToken = options.readToken;
    process.once('exit', () => child.kill('SIGKILL'));
    const deadline = Date.now() + (options.startSeconds ?? 15) * 1000;
    while (Date.now() < deadline) {
      const listening = proc.logged().find((e) => typeof e.msg === 'string' && /^Server listening at https?:\/\/127\.0\.0\.1:\d+$/.test(e.msg));
      if (listening) {
        proc.base = (listening.msg as string).slice('Server listening at '.length);
        return proc;
      }
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    throw new Error(`the aggregator did not start: ${proc.stderr}\n${proc.lines.slice(-20).join('\n')}`);
  }

  /** Every JSON log line so far. */
  logged(): LogLine[] {
    return this.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as LogLine];
      } catch {
        return [];
      }
    });
  }

  /** The alert lines ("finding raised" / "finding resolved") so far. */
  alerts(msg: 'finding raised' | 'finding resolved'): LogLine[] {
    return this.logged().filter((l) => l.msg === msg);
  }

  /** The alert lines of one finding, once at least one is in (the log may trail the HTTP answers). */
  async alertsFor(msg: 'finding raised' | 'finding resolved', id: string): Promise<LogLine[]> {
    const lines = () => this.alerts(msg).filter((l) => l.id === id);
    await logCaughtUp(() => lines().length > 0);
    return lines();
  }

  async get<T>(path: string, token: string | undefined = this.readToken): Promise<{ status: number; body: T }> {
    return this.call<T>('GET', path, undefined, token);
  }

  async post<T>(path: string, body: string, token?: string): Promise<{ status: number; body: T }> {
    return this.call<T>('POST', path, body, token);
  }

  private async call<T>(method: 'GET' | 'POST', path: string, body: string | undefined, token?: string): Promise<{ status: number; body: T }> {
    const res = await request(`${this.base}${path}`, {
      method,
      dispatcher: this.dispatcher,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    return answerOf<T>(res);
  }

  /**
   * Sends a signal and waits for the exit code (SIGKILL after 10 s). Stopping again (a teardown
   * after the test stopped it) waits for the same end.
   */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    this.stopping ??= (async () => {
      if (this.child.exitCode === null) this.child.kill(signal);
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      const code = await this.exited;
      clearTimeout(timer);
      await this.dispatcher.close();
      return code;
    })();
    return this.stopping;
  }
}
