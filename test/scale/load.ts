// The load generator of the scale test: it plays the agents of thousands of nodes, each sending
// its report at a (compressed) heartbeat with its own ServiceAccount token, retrying as the real
// agent does (connection errors, 429 and 5xx, with backoff) so that no report is lost, and
// measuring each delivery's latency.
import { Pool } from 'undici';

export interface Agent {
  node: string;
  token: string;
  // The report with "@@COLLECTED_AT@@" where collectedAt goes.
  body: string;
}

export interface LoadFigures {
  delivered: number; // reports that got a 2xx
  attempts: number; // requests, retries included
  refused: Map<number, number>; // final 4xx by status (none expected but the deliberate ones)
  latenciesMs: number[]; // of the 2xx answers
  sentAt: number[]; // when each of those was sent (Date.now()), index for index
  heard: Set<string>; // the agents with a 2xx since the figures started
  allHeardAt?: number; // when the last of the agents then present got its first 2xx (Date.now())
}

const PLACEHOLDER = '@@COLLECTED_AT@@';

const freshFigures = (): LoadFigures => ({ delivered: 0, attempts: 0, refused: new Map(), latenciesMs: [], sentAt: [], heard: new Set() });

export class LoadGenerator {
  private pool: Pool;
  private readonly agents = new Map<string, Agent & { due: number }>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private readonly idle = new Set<() => void>();
  figures = freshFigures();

  constructor(
    base: string,
    private readonly heartbeatMs: number,
    private readonly maxInFlight = 64,
  ) {
    this.pool = new Pool(base, { connections: 32, keepAliveTimeout: 30_000 });
  }

  /** Sends to another aggregator from now on (a restarted one listens on another port). */
  retarget(base: string): void {
    const old = this.pool;
    this.pool = new Pool(base, { connections: 32, keepAliveTimeout: 30_000 });
    void old.destroy();
  }

  /** Adds agents, each first sending at a random point of the first heartbeat period. */
  add(agents: Agent[]): void {
    const now = Date.now();
    for (const a of agents) this.agents.set(a.node, { ...a, due: now + Math.random() * this.heartbeatMs });
  }

  /** The node's agent is gone (its node was deleted): it sends nothing more. */
  remove(node: string): void {
    this.agents.delete(node);
  }

  /** Changes what an agent reports from its next heartbeat on (a node whose facts changed). */
  change(node: string, body: string): void {
    const agent = this.agents.get(node);
    if (agent) agent.body = body;
  }

  /** Starts figures afresh (after an aggregator restart, say). */
  resetFigures(): LoadFigures {
    const old = this.figures;
    this.figures = freshFigures();
    return old;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), 50);
  }

  /** Stops sending and waits for what is in flight (retries included) to end. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private tick(): void {
    const now = Date.now();
    for (const agent of this.agents.values()) {
      if (this.inFlight >= this.maxInFlight) return;
      if (agent.due > now) continue;
      agent.due = now + this.heartbeatMs;
      void this.deliver(agent);
    }
  }

  /** One report, retried until it gets an answer that is not worth retrying. */
  async deliver(agent: Agent, options: { token?: string } = {}): Promise<number> {
    this.inFlight++;
    try {
      const body = agent.body.replace(PLACEHOLDER, new Date().toISOString());
      for (let attempt = 0; ; attempt++) {
        this.figures.attempts++;
        const started = performance.now();
        const sentAt = Date.now();
        let status = 0;
        try {
          const res = await this.pool.request({
            method: 'POST',
            path: '/v1/reports',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${options.token ?? agent.token}` },
            body,
            headersTimeout: 15_000,
            bodyTimeout: 15_000,
          });
          status = res.statusCode;
          await res.body.dump();
        } catch {
          status = 0; // refused, reset: the aggregator is away
        }
        if (status >= 200 && status < 300) {
          this.figures.delivered++;
          this.figures.latenciesMs.push(performance.now() - started);
          this.figures.sentAt.push(sentAt);
          if (options.token === undefined && !this.figures.heard.has(agent.node)) {
            this.figures.heard.add(agent.node);
            if (this.figures.heard.size === this.agents.size) this.figures.allHeardAt = Date.now();
          }
          return status;
        }
        if (status >= 400 && status < 500 && status !== 429) {
          this.figures.refused.set(status, (this.figures.refused.get(status) ?? 0) + 1);
          return status;
        }
        // The agent's backoff: exponential with full jitter, capped at the heartbeat.
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(this.heartbeatMs, 250 * 2 ** attempt)));
        if (!this.agents.has(agent.node) && options.token === undefined) return status;
      }
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) for (const resolve of this.idle) resolve();
      if (this.inFlight === 0) this.idle.clear();
    }
  }
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export { processUsage } from '../support/proc.js';
