// The sizing, readable with kubectl (issue 21, 3): the values block of GET
// /v1/illumio/values.yaml also in a ConfigMap of the aggregator's namespace, key
// illumio-values.yaml, written when it changes. The chart creates the ConfigMap (RBAC cannot
// grant create on one name only); the aggregator may only get and patch it, by name.
import type { Logger } from 'pino';
import type { KubeApi } from '../cluster/api.js';
import type { PublishMetrics } from '../metrics.js';
import { KeptObject, type KeptObjectTiming } from './kept-object.js';
import type { Outlet } from './outlet.js';

export const VALUES_KEY = 'illumio-values.yaml';

// The sizing changes slowly (nodes, workloads counted every 10 minutes): looked at every 30 s.
export const DEFAULT_VALUES_TIMING: KeptObjectTiming = { minIntervalMs: 5_000, checkIntervalMs: 30_000, resyncMs: 300_000, debounceMs: 1_000 };

export interface ValuesConfigMapOptions {
  api: KubeApi;
  log: Logger;
  metrics: PublishMetrics;
  namespace: string;
  name: string;
  // GET /v1/illumio/values.yaml's answer, now.
  valuesYaml: () => string;
  ready: () => boolean;
  timing?: Partial<KeptObjectTiming>;
  now?: () => number;
}

export class ValuesConfigMap implements Outlet {
  readonly name = 'values ConfigMap';
  private readonly keeper: KeptObject;
  private missing = false;

  constructor(private readonly options: ValuesConfigMapOptions) {
    const path = `/api/v1/namespaces/${options.namespace}/configmaps/${options.name}`;
    this.keeper = new KeptObject({
      name: 'values ConfigMap',
      kind: 'values-configmap',
      api: options.api,
      log: options.log,
      timing: { ...DEFAULT_VALUES_TIMING, ...options.timing },
      mayCreate: false,
      target: () =>
        options.ready()
          ? { path, object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: options.name, namespace: options.namespace }, data: { [VALUES_KEY]: options.valuesYaml() } } }
          : undefined,
      onApplied: () => {
        options.metrics.valuesWrites.inc({ result: 'applied' });
        this.missing = false;
      },
      onFailed: () => options.metrics.valuesWrites.inc({ result: 'failed' }),
      onNotFound: () => {
        if (this.missing) return;
        this.missing = true;
        options.log.warn({ configMap: `${options.namespace}/${options.name}` }, 'values ConfigMap not found: the chart creates it (helm upgrade puts it back); the values stay at GET /v1/illumio/values.yaml');
      },
      ...(options.now ? { now: options.now } : {}),
    });
  }

  start(): void {
    this.keeper.start();
  }

  stop(): Promise<void> {
    return this.keeper.stop();
  }

  // A transition may change the sizing's answer (a node more or less): look soon.
  transition(): void {
    this.keeper.poke();
  }
}
