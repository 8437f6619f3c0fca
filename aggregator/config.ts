// Configuration from the environment (design.md section 5), validated once at start-up.
import { z } from 'zod';
import { CLUSTER_NAME_RULE, DNS1123_LABEL, DNS1123_SUBDOMAIN, MAX_CLUSTER_NAME } from '../protocol/names.js';
import { parsePceUrl } from './illumio/pce-tls.js';
import { parsePolicySize } from './illumio/sizing.js';

// Illumio does not publish the names of the chains the VEN writes (design.md section 6), so the
// default only matches chains named after the product; set the real prefixes where known.
export const DEFAULT_ILLUMIO_CHAIN_PATTERNS = 'illumio*,ILLUMIO*,Illumio*';

const seconds = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a number of seconds` })
    .positive({ error: `${name} must be more than 0` })
    .max(365 * 24 * 3600, { error: `${name} must be at most a year` });

/** "<namespace>/<name>" of a Kubernetes object. */
const objectRef = (name: string) =>
  z.string().refine((v) => {
    const [ns, obj, ...rest] = v.split('/');
    return rest.length === 0 && ns !== undefined && obj !== undefined && DNS1123_LABEL.test(ns) && DNS1123_SUBDOMAIN.test(obj);
  }, { error: `${name} must be <namespace>/<name>` });

const EnvSchema = z
  .object({
    PORT: z.coerce.number({ error: 'PORT must be a port number' }).int({ error: 'PORT must be a whole number' }).min(0).max(65535, { error: 'PORT must be at most 65535' }).default(8080),
    // All IPv4 interfaces: in a pod the Service reaches the pod IP. Set HOST=:: for IPv6 clusters.
    HOST: z.string().min(1).default('0.0.0.0'),
    AUTH_TOKEN_FILE: z.string().min(1).optional(),
    NODE_TTL_SECONDS: seconds('NODE_TTL_SECONDS').default(180),
    // Forget a node this long after its last report (node-feature-discovery garbage-collects
    // departed nodes the same way). Default: 1 hour, but never less than twice the TTL.
    NODE_DROP_AFTER_SECONDS: seconds('NODE_DROP_AFTER_SECONDS').optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { error: 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent' }).default('info'),
    ILLUMIO_CHAIN_PATTERNS: z.string().default(DEFAULT_ILLUMIO_CHAIN_PATTERNS),
    // The name this cluster's agents put in their reports (the chart's clusterName); the cluster
    // view's Nodes are matched to reports by it.
    CLUSTER_NAME: z.string().regex(DNS1123_LABEL, { error: `CLUSTER_NAME must be ${CLUSTER_NAME_RULE}` }).max(MAX_CLUSTER_NAME).default(''),
    NODE_NO_AGENT_GRACE_SECONDS: seconds('NODE_NO_AGENT_GRACE_SECONDS').optional(),
    CALICO_DRIFT_GRACE_SECONDS: seconds('CALICO_DRIFT_GRACE_SECONDS').default(360),
    // The cluster view: auto (in-cluster, else KUBECONFIG or ~/.kube/config, else off) or off.
    CLUSTER_VIEW: z.enum(['auto', 'off'], { error: 'CLUSTER_VIEW must be auto or off' }).default('auto'),
    // Agents of this cluster authenticate as this ServiceAccount, with tokens of this audience.
    AGENT_SERVICE_ACCOUNT: objectRef('AGENT_SERVICE_ACCOUNT').optional(),
    AGENT_TOKEN_AUDIENCE: z.string().min(1).default('nodeprep'),
    // How long a TokenReview or SubjectAccessReview answer is reused (never past the token's expiry).
    REVIEW_CACHE_SECONDS: seconds('REVIEW_CACHE_SECONDS').default(300),
    // HTTPS: both or neither; the files are read again when they change.
    TLS_CERT_FILE: z.string().min(1).optional(),
    TLS_KEY_FILE: z.string().min(1).optional(),
    // Illumio (design.md section 9; Illumio's chart names).
    CVEN_NAMESPACE: z.string().regex(DNS1123_LABEL, { error: 'CVEN_NAMESPACE must be a namespace name' }).default('illumio-system'),
    CVEN_DAEMONSET: z.string().regex(DNS1123_SUBDOMAIN, { error: 'CVEN_DAEMONSET must be an object name' }).default('illumio-ven'),
    KUBELINK_DEPLOYMENT: z.string().regex(DNS1123_SUBDOMAIN, { error: 'KUBELINK_DEPLOYMENT must be an object name' }).default('illumio-kubelink'),
    ROOT_CA_CONFIGMAP: objectRef('ROOT_CA_CONFIGMAP').default('illumio-system/root-ca-config'),
    ROOT_CA_EXPIRY_WARNING_DAYS: z.coerce.number({ error: 'ROOT_CA_EXPIRY_WARNING_DAYS must be a number of days' }).int().min(0).max(3650).default(30),
    PCE_URL: z.string().min(1).optional(),
    POLICY_SIZE: z.string().min(1).optional(),
    // How often the root CA, the PCE and the workload count are checked again.
    ILLUMIO_CHECK_INTERVAL_SECONDS: seconds('ILLUMIO_CHECK_INTERVAL_SECONDS').default(600),
    WORKLOADS: z.coerce.number({ error: 'WORKLOADS must be a whole number' }).int({ error: 'WORKLOADS must be a whole number' }).min(0).optional(),
    CALICO_CONFIGMAPS: z.string().default('calico-config'),
    // Where the findings go besides the HTTP API (design.md section 10), with the cluster view on:
    // the report object (when its CRD is served), Events on the Nodes, the values ConfigMap (the
    // chart creates it) and the Deployment that Events about no node regard.
    PUBLISH_REPORT: z.enum(['auto', 'off'], { error: 'PUBLISH_REPORT must be auto or off' }).default('auto'),
    PUBLISH_EVENTS: z.enum(['auto', 'off'], { error: 'PUBLISH_EVENTS must be auto or off' }).default('auto'),
    VALUES_CONFIGMAP: objectRef('VALUES_CONFIGMAP').optional(),
    AGGREGATOR_DEPLOYMENT: objectRef('AGGREGATOR_DEPLOYMENT').optional(),
  })
  .transform((env, ctx) => {
    if ((env.TLS_CERT_FILE === undefined) !== (env.TLS_KEY_FILE === undefined)) {
      const missing = env.TLS_CERT_FILE === undefined ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE';
      ctx.addIssue({ code: 'custom', path: [missing], message: `${missing} is not set: TLS_CERT_FILE and TLS_KEY_FILE go together` });
      return z.NEVER;
    }
    const pce = env.PCE_URL === undefined ? undefined : parsePceUrl(env.PCE_URL);
    if (pce && !pce.ok) {
      ctx.addIssue({ code: 'custom', path: ['PCE_URL'], message: `PCE_URL: ${pce.error}` });
      return z.NEVER;
    }
    const policy = env.POLICY_SIZE === undefined ? undefined : parsePolicySize(env.POLICY_SIZE);
    if (policy && !policy.ok) {
      ctx.addIssue({ code: 'custom', path: ['POLICY_SIZE'], message: `POLICY_SIZE: ${policy.error}` });
      return z.NEVER;
    }
    const dropAfterSeconds = env.NODE_DROP_AFTER_SECONDS ?? Math.max(3600, 2 * env.NODE_TTL_SECONDS);
    if (dropAfterSeconds <= env.NODE_TTL_SECONDS) {
      ctx.addIssue({ code: 'custom', path: ['NODE_DROP_AFTER_SECONDS'], message: 'NODE_DROP_AFTER_SECONDS must be more than NODE_TTL_SECONDS' });
      return z.NEVER;
    }
    return {
      port: env.PORT,
      host: env.HOST,
      authTokenFile: env.AUTH_TOKEN_FILE,
      ttlSeconds: env.NODE_TTL_SECONDS,
      dropAfterSeconds,
      logLevel: env.LOG_LEVEL,
      illumioChainPatterns: env.ILLUMIO_CHAIN_PATTERNS,
      homeCluster: env.CLUSTER_NAME,
      noAgentGraceSeconds: env.NODE_NO_AGENT_GRACE_SECONDS ?? env.NODE_TTL_SECONDS,
      driftGraceSeconds: env.CALICO_DRIFT_GRACE_SECONDS,
      clusterView: env.CLUSTER_VIEW,
      agentServiceAccount: env.AGENT_SERVICE_ACCOUNT,
      agentTokenAudience: env.AGENT_TOKEN_AUDIENCE,
      reviewCacheSeconds: env.REVIEW_CACHE_SECONDS,
      tls: env.TLS_CERT_FILE && env.TLS_KEY_FILE ? { certFile: env.TLS_CERT_FILE, keyFile: env.TLS_KEY_FILE } : undefined,
      illumio: {
        cvenNamespace: env.CVEN_NAMESPACE,
        cvenDaemonSet: env.CVEN_DAEMONSET,
        kubelinkDeployment: env.KUBELINK_DEPLOYMENT,
        rootCaConfigMap: env.ROOT_CA_CONFIGMAP,
        rootCaExpiryWarningDays: env.ROOT_CA_EXPIRY_WARNING_DAYS,
        pce: pce?.ok ? pce.address : undefined,
        policy: policy?.ok ? { bytes: policy.bytes, display: policy.display } : undefined,
        workloads: env.WORKLOADS,
        checkIntervalSeconds: env.ILLUMIO_CHECK_INTERVAL_SECONDS,
      },
      calicoConfigMaps: env.CALICO_CONFIGMAPS.split(',').map((n) => n.trim()).filter((n) => n !== ''),
      publish: {
        report: env.PUBLISH_REPORT === 'auto',
        events: env.PUBLISH_EVENTS === 'auto',
        ...(env.VALUES_CONFIGMAP ? { valuesConfigMap: splitRef(env.VALUES_CONFIGMAP) } : {}),
        ...(env.AGGREGATOR_DEPLOYMENT ? { deployment: splitRef(env.AGGREGATOR_DEPLOYMENT) } : {}),
      },
    };
  });

export type Config = z.output<typeof EnvSchema>;
export type PublishConfig = Config['publish'];

function splitRef(ref: string): { namespace: string; name: string } {
  const [namespace, name] = ref.split('/') as [string, string];
  return { namespace, name };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads the config from an environment; throws a ConfigError naming the first bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // An empty variable means "not set", as in a Helm chart's `value: ""`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = EnvSchema.safeParse(present);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const variable = String(issue.path[0] ?? 'environment');
  const message = issue.message.includes(variable) ? issue.message : `${variable}: ${issue.message}`;
  throw new ConfigError(`invalid configuration: ${message} (got ${JSON.stringify(env[variable] ?? '')})`);
}

/** How often to look for silent nodes: often enough that NODE_STALE shows within TTL + 1 s. */
export function sweepIntervalMs(ttlSeconds: number): number {
  return Math.min(1000, Math.max(50, (ttlSeconds * 1000) / 4));
}
