// FELIX_CHAININSERTMODE as the kubelet builds it and Felix reads it (aggregator/detect/calico-env.ts),
// and the place configuredCalicoMode then names. Pure and table-driven: calico-node's facts in,
// the configured mode and its words out. calico-env-api.test.ts reads the same DaemonSets from the
// real API server.
import t from 'tap';
import { felixEnvSetting } from '../../aggregator/detect/calico-env.js';
import { configuredCalicoMode } from '../../aggregator/detect/calico-config.js';
import type { CalicoFacts, FelixEnvEntry, WorkloadFacts } from '../../aggregator/cluster/facts.js';
import { slimWorkload } from '../../aggregator/cluster/view.js';

const NS = 'kube-system';

interface World {
  entries: FelixEnvEntry[];
  // ConfigMaps of kube-system by name (data); `readable` are the names nodeprep reads (CALICO_CONFIGMAPS).
  configMaps?: Record<string, Record<string, string>>;
  readable?: string[];
  felixDefault?: string; // FelixConfiguration default's chainInsertMode; undefined: no FelixConfiguration
  operator?: boolean;
}

function calicoFacts(w: World): CalicoFacts {
  const calicoNode: WorkloadFacts = {
    namespace: NS, name: 'calico-node', tolerations: [], nodeSelector: {}, containers: [{ name: 'calico-node' }], operatorManaged: w.operator ?? false,
    ...(w.entries.length > 0 ? { felixEnv: { container: 'calico-node', entries: w.entries } } : {}),
  };
  const configMaps = new Map(Object.entries(w.configMaps ?? {}).map(([name, data]) => [`${NS}/${name}`, { namespace: NS, name, data, binaryData: {} }]));
  return {
    felixConfigurations: new Map(w.felixDefault === undefined ? [] : [['default', { name: 'default', chainInsertMode: w.felixDefault }]]),
    felixCrdServed: true,
    calicoNode,
    configMaps,
    readableConfigMaps: w.readable ?? ['calico-config'],
  };
}

const value = (v: string, name = 'FELIX_CHAININSERTMODE'): FelixEnvEntry => ({ from: 'value', name, value: v });
const cmKey = (configMap: string, key: string, optional = false): FelixEnvEntry => ({ from: 'configMapKey', name: 'FELIX_CHAININSERTMODE', configMap, key, optional });
const cmEnv = (configMap: string, prefix = '', optional = false): FelixEnvEntry => ({ from: 'configMapEnv', configMap, prefix, optional });
const secretEnv = (secret: string, prefix = ''): FelixEnvEntry => ({ from: 'secretEnv', secret, prefix, optional: false });

interface Case {
  name: string;
  world: World;
  mode: 'insert' | 'append' | undefined;
  place: string;
  where: RegExp;
  fix?: RegExp;
}

const ENV = `env:${NS}/calico-node`;

const CASES: Case[] = [
  // Kubernetes: of two entries of one name, the container gets the last.
  { name: 'defined twice: the last wins (Append)', world: { entries: [value('Insert'), value('Append')] }, mode: 'append', place: ENV, where: /^FELIX_CHAININSERTMODE=Append, on DaemonSet kube-system\/calico-node/ },
  { name: 'defined twice: the last wins (Insert)', world: { entries: [value('Append'), value('Insert')] }, mode: 'insert', place: ENV, where: /^FELIX_CHAININSERTMODE=Insert,/, fix: /set env daemonset\/calico-node -c calico-node FELIX_CHAININSERTMODE=Append/ },
  // An optional reference that finds nothing adds nothing: the variable is unset, FelixConfiguration decides.
  {
    name: 'optional key missing: FelixConfiguration decides',
    world: { entries: [cmKey('calico-config', 'chain_insert_mode', true)], configMaps: { 'calico-config': { veth_mtu: '1440' } }, felixDefault: 'Append' },
    mode: 'append', place: 'felix:default',
    where: /^FelixConfiguration default \(spec\.chainInsertMode: Append\), as FELIX_CHAININSERTMODE on DaemonSet kube-system\/calico-node does not decide \(.*optional key chain_insert_mode of ConfigMap kube-system\/calico-config, which does not exist/,
    fix: /patch felixconfiguration default/,
  },
  {
    name: 'optional ConfigMap missing: FelixConfiguration decides, Insert by default',
    world: { entries: [cmKey('calico-config', 'chain_insert_mode', true)] },
    mode: 'insert', place: 'built-in', where: /^Calico's built-in default \(Insert\): there is no FelixConfiguration and FELIX_CHAININSERTMODE on DaemonSet kube-system\/calico-node does not decide \(.*optional ConfigMap kube-system\/calico-config, which does not exist/,
  },
  {
    name: 'an optional key missing leaves an earlier entry of the name in place',
    world: { entries: [value('Append'), cmKey('calico-config', 'chain_insert_mode', true)], configMaps: { 'calico-config': {} }, felixDefault: 'Insert' },
    mode: 'append', place: ENV, where: /^FELIX_CHAININSERTMODE=Append,/,
  },
  {
    name: 'a required key missing: pods cannot start, the mode is unknown',
    world: { entries: [cmKey('calico-config', 'chain_insert_mode')], configMaps: { 'calico-config': {} }, felixDefault: 'Append' },
    mode: undefined, place: ENV, where: /key chain_insert_mode of ConfigMap kube-system\/calico-config does not exist and is not optional: new calico-node pods cannot start/,
  },
  {
    name: 'a ConfigMap nodeprep does not read: unknown, and how to read it',
    world: { entries: [cmKey('site-calico', 'mode', true)], felixDefault: 'Append' },
    mode: undefined, place: ENV, where: /ConfigMap kube-system\/site-calico, which nodeprep does not read \(add site-calico to the chart's aggregator\.clusterView\.calicoConfigMaps/,
    fix: /kubectl -n kube-system get configmap site-calico -o yaml/,
  },
  { name: 'a key of a ConfigMap it reads', world: { entries: [cmKey('calico-config', 'chain_insert_mode')], configMaps: { 'calico-config': { chain_insert_mode: 'Insert' } } }, mode: 'insert', place: ENV, where: /^FELIX_CHAININSERTMODE from ConfigMap kube-system\/calico-config key chain_insert_mode,/, fix: /patch configmap calico-config --type merge -p '\{"data":\{"chain_insert_mode":"Append"\}\}' && kubectl -n kube-system rollout restart daemonset\/calico-node/ },
  // envFrom: every key a variable, prefix + key.
  { name: 'envFrom a ConfigMap', world: { entries: [cmEnv('calico-config')], configMaps: { 'calico-config': { FELIX_CHAININSERTMODE: 'Insert', FELIX_LOGSEVERITYSCREEN: 'info' } } }, mode: 'insert', place: ENV, where: /^FELIX_CHAININSERTMODE from envFrom ConfigMap kube-system\/calico-config, key FELIX_CHAININSERTMODE,/, fix: /"FELIX_CHAININSERTMODE":"Append"/ },
  { name: 'envFrom with a prefix', world: { entries: [cmEnv('calico-config', 'FELIX_')], configMaps: { 'calico-config': { CHAININSERTMODE: 'Insert' } } }, mode: 'insert', place: ENV, where: /envFrom ConfigMap kube-system\/calico-config \(prefix FELIX_\), key CHAININSERTMODE/, fix: /"CHAININSERTMODE":"Append"/ },
  { name: 'envFrom, the name in another case: Felix reads it all the same', world: { entries: [cmEnv('calico-config', 'FELIX_')], configMaps: { 'calico-config': { ChainInsertMode: 'append' } }, felixDefault: 'Insert' }, mode: 'append', place: ENV, where: /^FELIX_ChainInsertMode from envFrom/ },
  { name: 'env wins over envFrom', world: { entries: [cmEnv('calico-config'), value('Append')], configMaps: { 'calico-config': { FELIX_CHAININSERTMODE: 'Insert' } } }, mode: 'append', place: ENV, where: /^FELIX_CHAININSERTMODE=Append,/ },
  { name: 'a later envFrom source wins over an earlier one', world: { entries: [cmEnv('calico-config'), cmEnv('calico-site')], configMaps: { 'calico-config': { FELIX_CHAININSERTMODE: 'Insert' }, 'calico-site': { FELIX_CHAININSERTMODE: 'Append' } }, readable: ['calico-config', 'calico-site'] }, mode: 'append', place: ENV, where: /calico-site/ },
  { name: 'envFrom an optional ConfigMap that is not there', world: { entries: [cmEnv('calico-config', '', true)], felixDefault: 'Append' }, mode: 'append', place: 'felix:default', where: /does not decide \(the optional envFrom ConfigMap kube-system\/calico-config does not exist/ },
  { name: 'envFrom a required ConfigMap that is not there', world: { entries: [cmEnv('calico-config')], felixDefault: 'Append' }, mode: undefined, place: ENV, where: /envFrom ConfigMap kube-system\/calico-config does not exist and is not optional/ },
  // Secrets: never read.
  {
    name: 'envFrom a Secret: unknown, and how to check without reading values',
    world: { entries: [secretEnv('calico-env', 'FELIX_')], felixDefault: 'Append' },
    mode: undefined, place: ENV, where: /may be set by envFrom Secret kube-system\/calico-env \(prefix FELIX_\), which nodeprep does not read: it reads no Secrets/,
    fix: /kubectl -n kube-system get secret calico-env -o go-template='\{\{range \$k, \$v := \.data\}\}\{\{\$k\}\}.*\(its keys, no values\); a key that reads chaininsertmode in any case sets it/,
  },
  { name: 'envFrom a Secret, then env: env wins', world: { entries: [secretEnv('calico-env'), value('Append')] }, mode: 'append', place: ENV, where: /^FELIX_CHAININSERTMODE=Append,/ },
  { name: 'a Secret key', world: { entries: [{ from: 'secretKey', name: 'FELIX_CHAININSERTMODE', secret: 'calico-env', key: 'mode', optional: false }] }, mode: undefined, place: ENV, where: /from Secret kube-system\/calico-env key mode, which nodeprep does not read/ },
  // Felix: an empty value is ignored; only insert and append, in any case, are taken.
  { name: 'empty: Felix ignores it, FelixConfiguration decides', world: { entries: [value('')], felixDefault: 'Append' }, mode: 'append', place: 'felix:default', where: /does not decide \(FELIX_CHAININSERTMODE= is empty, which Felix ignores as if it were not set\)$/ },
  { name: 'empty from a ConfigMap key', world: { entries: [cmKey('calico-config', 'mode')], configMaps: { 'calico-config': { mode: '' } } }, mode: 'insert', place: 'built-in', where: /FELIX_CHAININSERTMODE from ConfigMap kube-system\/calico-config key mode is empty, which Felix ignores/ },
  { name: 'upper case is taken', world: { entries: [value('APPEND')] }, mode: 'append', place: ENV, where: /^FELIX_CHAININSERTMODE=APPEND,/ },
  { name: '"none": Felix does not start', world: { entries: [value('none')], felixDefault: 'Append' }, mode: undefined, place: ENV, where: /Felix takes only Insert or Append, in any case and without spaces, and does not start with "none"/, fix: /FELIX_CHAININSERTMODE=Append/ },
  { name: 'a space around it: Felix does not start', world: { entries: [value(' Append')] }, mode: undefined, place: ENV, where: /does not start with " Append"/ },
  { name: 'a reference to another variable', world: { entries: [value('$(MODE)')] }, mode: undefined, place: ENV, where: /refers to other variables, which nodeprep does not expand/, fix: /exec ds\/calico-node -c calico-node -- printenv FELIX_CHAININSERTMODE/ },
  // Two spellings Felix reads as one parameter: the same effect is that effect; different is undetermined.
  { name: 'two spellings, one value', world: { entries: [value('Append'), value('append', 'felix_chaininsertmode')] }, mode: 'append', place: ENV, where: /^FELIX_CHAININSERTMODE=Append,/ },
  { name: 'two spellings, two values', world: { entries: [value('Append'), value('Insert', 'Felix_ChainInsertMode')] }, mode: undefined, place: ENV, where: /FELIX_CHAININSERTMODE and Felix_ChainInsertMode are all set, with different effects .*whichever the container runtime lists last/ },
];

t.test('the configured mode, as the kubelet and Felix make it', async (t) => {
  for (const c of CASES) {
    const configured = configuredCalicoMode(calicoFacts(c.world), 'worker-1');
    t.equal(configured?.mode, c.mode, `${c.name}: mode`);
    t.equal(configured?.place, c.place, `${c.name}: place`);
    t.match(configured?.where, c.where, `${c.name}: where`);
    if (c.fix) t.match(configured?.fix, c.fix, `${c.name}: fix`);
  }
});

t.test('the operator manages calico-node: the fix goes through FelixConfiguration', async (t) => {
  const configured = configuredCalicoMode(calicoFacts({ entries: [value('Insert')], operator: true, felixDefault: 'Append' }), 'worker-1');
  t.equal(configured?.mode, 'insert');
  t.match(configured?.fix, /the Tigera operator manages kube-system\/calico-node and reverts hand edits/);
});

t.test('felixEnvSetting says unset with no reason when nothing can set the variable', async (t) => {
  const facts = calicoFacts({ entries: [] });
  t.same(felixEnvSetting(facts.calicoNode!, facts), { state: 'unset' });
});

t.test('the view keeps what can set the variable, in the kubelet\'s order, and nothing else', async (t) => {
  const daemonSet = (name: string, container: Record<string, unknown>, others: Record<string, unknown>[] = []) => ({
    metadata: { name, namespace: NS },
    spec: { template: { spec: { containers: [...others, { name: 'calico-node', ...container }] } } },
  });
  const slim = slimWorkload(
    daemonSet('calico-node', {
      env: [
        { name: 'FELIX_CHAININSERTMODE', value: 'Insert' },
        { name: 'FELIX_LOGSEVERITYSCREEN', value: 'info' },
        { name: 'felix_chaininsertmode', valueFrom: { configMapKeyRef: { name: 'calico-config', key: 'mode', optional: true } } },
        { name: 'FELIX_CHAININSERTMODE', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
        { name: 'FELIX_CHAININSERTMODE', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      ],
      envFrom: [
        { configMapRef: { name: 'calico-config' } },
        { prefix: 'FELIX_', secretRef: { name: 'calico-env', optional: true } },
        { prefix: 'CALICO_', configMapRef: { name: 'other' } }, // cannot make the name
        { prefix: 'felix_chain', configMapRef: { name: 'lower' } },
      ],
    }, [{ name: 'sidecar', env: [{ name: 'FELIX_CHAININSERTMODE', value: 'Append' }] }]),
  );
  t.same(slim.felixEnv, {
    container: 'calico-node',
    entries: [
      { from: 'configMapEnv', configMap: 'calico-config', prefix: '', optional: false },
      { from: 'secretEnv', secret: 'calico-env', prefix: 'FELIX_', optional: true },
      { from: 'configMapEnv', configMap: 'lower', prefix: 'felix_chain', optional: false },
      { from: 'value', name: 'FELIX_CHAININSERTMODE', value: 'Insert' },
      { from: 'configMapKey', name: 'felix_chaininsertmode', configMap: 'calico-config', key: 'mode', optional: true },
      { from: 'secretKey', name: 'FELIX_CHAININSERTMODE', secret: 's', key: 'k', optional: false },
      { from: 'field', name: 'FELIX_CHAININSERTMODE', field: 'metadata.name' },
    ],
  }, 'envFrom first, then env, each in order; the sidecar is not Felix');
  t.notOk('felixEnv' in slimWorkload(daemonSet('kube-proxy', { envFrom: [{ configMapRef: { name: 'calico-config' } }] })), 'other workloads keep none of it');
  t.notOk('felixEnv' in slimWorkload(daemonSet('calico-node', { env: [{ name: 'FELIX_LOGSEVERITYSCREEN', value: 'info' }] })), 'nothing that can set it: nothing kept');
});
