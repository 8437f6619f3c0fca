// IllumioChecks runs the root CA check from the schedule and from the ConfigMap watch, with no
// order between them. Here the scheduled run meets a PCE on loopback that is slow to answer (its
// first handshake waits), while the ConfigMap is fixed and the watch's run answers at once: the
// slow, older run must not put its stale answer back when it finally ends.
import t from 'tap';
import { pino } from 'pino';
import type { ClusterFacts, ConfigMapFacts } from '../../aggregator/cluster/facts.js';
import { compileChainPatterns } from '../../aggregator/detect/illumio.js';
import { Engine } from '../../aggregator/engine.js';
import { IllumioChecks } from '../../aggregator/illumio/checks.js';
import { parsePceUrl } from '../../aggregator/illumio/pce-tls.js';
import { DEFAULT_ROOT_CA_LOCATION } from '../../aggregator/illumio/root-ca.js';
import { makePki } from './fixtures/pki.js';
import { slowTlsServer } from './fixtures/servers.js';

const pki = makePki();
const SLOW_MS = 1500;

function facts(rootCaPem: string): ClusterFacts {
  const rootCa: ConfigMapFacts = { ...DEFAULT_ROOT_CA_LOCATION, data: { 'root-ca.crt': rootCaPem }, binaryData: {} };
  return {
    homeCluster: '',
    nodes: new Map(),
    agentPods: new Map(),
    calico: { felixConfigurations: new Map(), felixCrdServed: false, configMaps: new Map(), readableConfigMaps: [] },
    illumio: { cvenNodes: new Set(), rootCa },
  };
}

t.test('a slow older run of the root CA check does not overwrite a newer answer', async (t) => {
  const pce = await slowTlsServer(t, [pki.pceLeaf.cert, pki.intermediate.cert], pki.pceLeaf.key, [SLOW_MS]);
  const address = parsePceUrl(`pce.test:${pce.port}`);
  if (!address.ok) throw new Error(address.error);
  const engine = new Engine({ ttlSeconds: 60, dropAfterSeconds: 3600, detect: { isIllumioChain: compileChainPatterns('illumio*') }, onTransition: () => undefined });
  const checks = new IllumioChecks({
    engine,
    rootCa: DEFAULT_ROOT_CA_LOCATION,
    pce: address.address,
    expiringDays: 30,
    log: pino({ level: 'silent' }),
    probeOptions: { connectHost: '127.0.0.1', timeoutMs: 10_000 },
  });
  const codes = () => engine.book.all().map((f) => f.code).sort();

  const rootCaStep = () => checks.readiness().steps.find((s) => s.step === 'root-ca')!;
  const until = async (what: string, ok: () => boolean, ms: number) => {
    for (const deadline = Date.now() + ms; !ok(); await new Promise((resolve) => setTimeout(resolve, 10))) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    }
  };

  // The ConfigMap holds another CA: the scheduled run will find the PCE untrusted, in 1.5 s.
  engine.setClusterFacts(facts(pki.otherRoot.cert));
  const scheduled = checks.refresh();
  await until('the scheduled run connects', () => pce.accepted() === 1, 5000);
  // Meanwhile the admin fixes the ConfigMap; the watch's run answers at once.
  const right = facts(pki.root.cert);
  engine.setClusterFacts(right);
  checks.onFacts(right);
  await until('the newer run answers', () => rootCaStep().state !== 'unknown', SLOW_MS - 200);
  t.match(rootCaStep(), { state: 'ready', reason: /the ConfigMap's CA verifies the PCE's certificate/ }, 'the fixed ConfigMap verifies the PCE');
  t.same(codes(), [], 'no finding');

  await scheduled;
  t.equal(pce.accepted(), 2, 'the slow run did end: it made its handshake');
  t.same(codes(), [], 'the slow run of the old ConfigMap ended later and changed nothing');
  t.match(rootCaStep(), { state: 'ready' }, 'readiness keeps the newer answer');
});
