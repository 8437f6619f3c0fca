// The real Prometheus for the alert and dashboard tests: Debian's `prometheus` package (which
// brings `promtool`), run as a process of the test with its own configuration, its storage in a
// temporary directory, on 127.0.0.1 with a free port, and killed at the end whatever happens.
// The package may also have started its own service (port 9090, /etc/prometheus): nothing here
// uses it, and start() checks that the server it talks to runs the test's configuration.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { eventually } from './cluster.js';
import { freePort } from './kube-apiserver.js';
import { atProcessEnd } from './process-end.js';

/** Why this machine cannot run the Prometheus tests, or undefined when it can. */
function prometheusUnavailable(): string | undefined {
  for (const bin of ['prometheus', 'promtool']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed (Debian package prometheus: apt-get install prometheus)`;
  }
  return undefined;
}

/** The reason to skip, or undefined; in CI (CI=true) a missing Prometheus is an error, never a skip. */
export function requirePrometheus(): string | undefined {
  const why = prometheusUnavailable();
  if (why && process.env.CI === 'true') throw new Error(`CI=true and the Prometheus tests cannot run: ${why}`);
  return why;
}

export interface PromtoolResult {
  status: number | null;
  output: string;
}

/** Runs promtool with the arguments (and input on stdin); stdout and stderr together. */
export function promtool(args: string[], options: { input?: string; cwd?: string } = {}): PromtoolResult {
  const res = spawnSync('promtool', args, { encoding: 'utf8', input: options.input, cwd: options.cwd, timeout: 120_000 });
  if (res.error) throw res.error;
  return { status: res.status, output: `${res.stdout}${res.stderr}` };
}

export interface ScrapeTarget {
  job: string;
  address: string;
  /** Target labels, as a ServiceMonitor's target would have them (namespace, pod, ...). */
  labels?: Record<string, string>;
}

export interface PrometheusOptions {
  targets: ScrapeTarget[];
  /** Rule files' contents, by file name. */
  rules?: Record<string, string>;
  /** Scrape and evaluation interval, seconds. */
  intervalSeconds?: number;
}

export interface Sample {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}

interface ApiAnswer<T> {
  status: 'success' | 'error';
  data: T;
  error?: string;
  errorType?: string;
}

export class PrometheusProcess {
  private output = '';

  private constructor(
    readonly child: ChildProcess,
    readonly base: string,
    readonly dir: string,
  ) {
    const keep = (d: Buffer) => {
      if (this.output.length < 65_536) this.output += d.toString();
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  static async start(options: PrometheusOptions): Promise<PrometheusProcess> {
    const dir = mkdtempSync(path.join(tmpdir(), 'nodeprep-prometheus-'));
    const interval = `${options.intervalSeconds ?? 1}s`;
    const ruleFiles = Object.entries(options.rules ?? {}).map(([name, text]) => {
      const file = path.join(dir, name);
      writeFileSync(file, text);
      return file;
    });
    // JSON is YAML: the configuration needs no YAML writer.
    const config = {
      global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
      rule_files: ruleFiles,
      scrape_configs: options.targets.map((t) => ({ job_name: t.job, static_configs: [{ targets: [t.address], labels: t.labels ?? {} }] })),
    };
    const configFile = path.join(dir, 'prometheus.yml');
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    const port = await freePort();
    const child = spawn('prometheus', [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let cleaned = false;
    const cleanup = () => {
      if (cleaned) return;
      cleaned = true;
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    };
    atProcessEnd(cleanup);
    const prometheus = new PrometheusProcess(child, `http://127.0.0.1:${port}`, dir);
    prometheus.cleanup = cleanup;
    try {
      await eventually('Prometheus ready', 30, async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${prometheus.output}`);
        const res = await request(`${prometheus.base}/-/ready`);
        await res.body.text();
        return res.statusCode === 200;
      });
      // The server on that port is this test's, not the package's service: it runs this file.
      const flags = await prometheus.api<Record<string, string>>('/api/v1/status/flags');
      if (flags['config.file'] !== configFile) throw new Error(`the Prometheus at ${prometheus.base} runs ${flags['config.file']}, not the test's ${configFile}`);
    } catch (err) {
      cleanup();
      throw err;
    }
    return prometheus;
  }

  private cleanup: () => void = () => undefined;

  /** Kills the process and removes its directory. */
  stop(): void {
    this.cleanup();
  }

  /** GET of an HTTP API path; the answer's data, or an error with Prometheus's message. */
  async api<T>(pathAndQuery: string): Promise<T> {
    const res = await request(`${this.base}${pathAndQuery}`, { headersTimeout: 30_000, bodyTimeout: 30_000 });
    const answer = (await res.body.json()) as ApiAnswer<T>;
    if (answer.status !== 'success') throw new Error(`${pathAndQuery}: ${answer.errorType}: ${answer.error}`);
    return answer.data;
  }

  /** An instant query. */
  async query(expr: string): Promise<Sample[]> {
    const data = await this.api<{ result: Sample[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    return data.result;
  }

  /** A range query, as a Grafana time series panel runs it. */
  async queryRange(expr: string, startSeconds: number, endSeconds: number, stepSeconds: number): Promise<Sample[]> {
    const data = await this.api<{ result: Sample[] }>(`/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${startSeconds}&end=${endSeconds}&step=${stepSeconds}`);
    return data.result;
  }

  /** The active alerts (pending and firing), as GET /api/v1/alerts lists them. */
  async alerts(): Promise<{ labels: Record<string, string>; annotations: Record<string, string>; state: 'pending' | 'firing'; value: string }[]> {
    return (await this.api<{ alerts: { labels: Record<string, string>; annotations: Record<string, string>; state: 'pending' | 'firing'; value: string }[] }>('/api/v1/alerts')).alerts;
  }
}
