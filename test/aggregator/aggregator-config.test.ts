// Start-up configuration and the token check.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, DEFAULT_ILLUMIO_CHAIN_PATTERNS, loadConfig, sweepIntervalMs } from '../../aggregator/config.js';

t.test('defaults', async (t) => {
  t.same(loadConfig({}), {
    port: 8080,
    host: '0.0.0.0',
    authTokenFile: undefined,
    ttlSeconds: 180,
    dropAfterSeconds: 3600,
    logLevel: 'info',
    illumioChainPatterns: DEFAULT_ILLUMIO_CHAIN_PATTERNS,
    homeCluster: '',
    noAgentGraceSeconds: 180,
    driftGraceSeconds: 360,
    clusterView: 'auto',
    agentServiceAccount: undefined,
    agentTokenAudience: 'nodeprep',
    reviewCacheSeconds: 300,
    tls: undefined,
    illumio: {
      cvenNamespace: 'illumio-system',
      cvenDaemonSet: 'illumio-ven',
      kubelinkDeployment: 'illumio-kubelink',
      rootCaConfigMap: 'illumio-system/root-ca-config',
      rootCaExpiryWarningDays: 30,
      pce: undefined,
      policy: undefined,
      workloads: undefined,
      checkIntervalSeconds: 600,
    },
    calicoConfigMaps: ['calico-config'],
    publish: { report: true, events: true },
  });
});

t.test('publish: each outlet off by name, the ConfigMap and the Deployment by reference', async (t) => {
  t.same(loadConfig({ PUBLISH_REPORT: 'off', PUBLISH_EVENTS: 'off' }).publish, { report: false, events: false });
  t.same(loadConfig({ VALUES_CONFIGMAP: 'nodeprep/np-illumio-values', AGGREGATOR_DEPLOYMENT: 'nodeprep/np-aggregator' }).publish, {
    report: true, events: true, valuesConfigMap: { namespace: 'nodeprep', name: 'np-illumio-values' }, deployment: { namespace: 'nodeprep', name: 'np-aggregator' },
  });
  t.throws(() => loadConfig({ PUBLISH_REPORT: 'yes' }), /PUBLISH_REPORT must be auto or off/);
  t.throws(() => loadConfig({ VALUES_CONFIGMAP: 'np-illumio-values' }), /VALUES_CONFIGMAP must be <namespace>\/<name>/);
});

t.test('values, fractions, and empty meaning unset', async (t) => {
  const config = loadConfig({ PORT: '9000', HOST: '::', NODE_TTL_SECONDS: '1.5', NODE_DROP_AFTER_SECONDS: '', LOG_LEVEL: 'debug', AUTH_TOKEN_FILE: '/run/token', ILLUMIO_CHAIN_PATTERNS: 'VEN-*' });
  t.match(config, { port: 9000, host: '::', ttlSeconds: 1.5, dropAfterSeconds: 3600, logLevel: 'debug', authTokenFile: '/run/token', illumioChainPatterns: 'VEN-*' });
  t.equal(loadConfig({ NODE_TTL_SECONDS: '7200' }).dropAfterSeconds, 14400, 'the drop time follows a long TTL');
  t.equal(loadConfig({ NODE_TTL_SECONDS: '2', NODE_DROP_AFTER_SECONDS: '5' }).dropAfterSeconds, 5);
});

t.test('a bad value names its variable', async (t) => {
  const cases: [Record<string, string>, string][] = [
    [{ PORT: 'http' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ PORT: '80.5' }, 'PORT'],
    [{ NODE_TTL_SECONDS: '0' }, 'NODE_TTL_SECONDS'],
    [{ NODE_TTL_SECONDS: 'soon' }, 'NODE_TTL_SECONDS'],
    [{ NODE_TTL_SECONDS: '60', NODE_DROP_AFTER_SECONDS: '30' }, 'NODE_DROP_AFTER_SECONDS'],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL'],
    [{ CLUSTER_NAME: 'Prod/EU' }, 'CLUSTER_NAME'],
    [{ CLUSTER_VIEW: 'on' }, 'CLUSTER_VIEW'],
    [{ AGENT_SERVICE_ACCOUNT: 'nodeprep-agent' }, 'AGENT_SERVICE_ACCOUNT'],
    [{ TLS_CERT_FILE: '/tls/tls.crt' }, 'TLS_KEY_FILE'],
    [{ ROOT_CA_CONFIGMAP: 'illumio-system/root/ca' }, 'ROOT_CA_CONFIGMAP'],
    [{ WORKLOADS: 'many' }, 'WORKLOADS'],
    [{ PCE_URL: 'https://pce.example.com/login' }, 'PCE_URL'],
    [{ POLICY_SIZE: '500MB' }, 'POLICY_SIZE'],
  ];
  for (const [env, variable] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', message: new RegExp(`^invalid configuration: ${variable}`) }, JSON.stringify(env));
  }
  t.type(new ConfigError('x'), Error);
});

t.test('the PCE URL and the policy size are read as the guide writes them', async (t) => {
  const config = loadConfig({ PCE_URL: 'https://pce.example.com:8443', POLICY_SIZE: '1.5Mi' });
  t.match(config.illumio.pce, { host: 'pce.example.com', port: 8443 });
  t.same(config.illumio.policy, { bytes: 1572864, display: '1.5Mi' });
  t.throws(() => loadConfig({ POLICY_SIZE: '500MB' }), /POLICY_SIZE: .*decimal unit/);
});

t.test('the stale sweep runs often enough for NODE_STALE within TTL + 1 s', async (t) => {
  t.equal(sweepIntervalMs(180), 1000);
  t.equal(sweepIntervalMs(1.5), 375);
  t.equal(sweepIntervalMs(0.01), 50);
});

// The built entry point (npm test builds first): bad config is one line naming the variable.
const main = join(import.meta.dirname, '..', '..', 'dist', 'nodeprep-aggregator.mjs');
t.test('main exits non-zero on bad config', { skip: existsSync(main) ? false : 'run npm run build first' }, async (t) => {
  const bad = spawnSync(process.execPath, [main], { env: { PATH: process.env.PATH, PORT: 'eighty' }, encoding: 'utf8', timeout: 10_000 });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /^nodeprep-aggregator: invalid configuration: PORT/);
  t.equal(bad.stderr.trim().split('\n').length, 1, 'one line');
  const missing = spawnSync(process.execPath, [main], { env: { PATH: process.env.PATH, AUTH_TOKEN_FILE: '/nonexistent/token' }, encoding: 'utf8', timeout: 10_000 });
  t.equal(missing.status, 2);
  t.match(missing.stderr, /\/nonexistent\/token/);
  const dir = mkdtempSync(join(tmpdir(), 'nodeprep-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'tokens'), 'abc edge\nabc core\n');
  const twice = spawnSync(process.execPath, [main], { env: { PATH: process.env.PATH, AUTH_TOKEN_FILE: join(dir, 'tokens'), CLUSTER_VIEW: 'off' }, encoding: 'utf8', timeout: 10_000 });
  t.equal(twice.status, 2);
  t.match(twice.stderr, /line 2: the same token is bound to two clusters/);
});
