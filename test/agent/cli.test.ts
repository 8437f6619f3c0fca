import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import t from 'tap';
import { LOG_LEVELS, UsageError, hostNodeName, parseAgentArgs, parseDumpSpec } from '../../agent/cli.js';
import { AGENT_BIN } from '../support/fixtures.js';

t.test('--from-dump prefixes', async (t) => {
  t.same(parseDumpSpec('dump.txt'), { family: 'ipv4', backend: 'unknown', file: 'dump.txt' });
  t.same(parseDumpSpec('ipv6=a.txt'), { family: 'ipv6', backend: 'unknown', file: 'a.txt' });
  t.same(parseDumpSpec('ipv6/legacy=a.txt'), { family: 'ipv6', backend: 'legacy', file: 'a.txt' });
  t.same(parseDumpSpec('/nft=a=b.txt'), { family: 'ipv4', backend: 'nft', file: 'a=b.txt' });
  t.same(parseDumpSpec('./x=1.txt'), { family: 'ipv4', backend: 'unknown', file: './x=1.txt' });
  t.throws(() => parseDumpSpec('ip4=a.txt'), UsageError);
  t.throws(() => parseDumpSpec('ipv4/iptables=a.txt'), /not a prefix/);
});

t.test('flags win over the environment, which wins over defaults', async (t) => {
  const env = { HOST_ROOT: '/h', NODE_NAME: 'n1', AGGREGATOR_URL: 'http://a:8080', SAMPLE_INTERVAL: '0.5' };
  const cmd = parseAgentArgs(['run', '--host-root', '/flag'], env);
  t.equal(cmd.hostRoot, '/flag');
  t.equal(cmd.nodeName, 'n1');
  t.equal(cmd.sampleIntervalS, 0.5);
  t.equal(cmd.heartbeatIntervalS, 60);
  t.equal(parseAgentArgs(['collect'], {}).hostRoot, '/host');
});

t.test('usage errors say what is wrong', async (t) => {
  t.throws(() => parseAgentArgs([], {}), /a command is required/);
  t.throws(() => parseAgentArgs(['serve'], {}), /unknown command "serve"/);
  t.throws(() => parseAgentArgs(['collect', '--nope'], {}), UsageError);
  t.throws(() => parseAgentArgs(['run', '--aggregator-url', 'http://x'], {}), /--node-name/);
  t.throws(() => parseAgentArgs(['run', '--node-name', 'n'], {}), /--aggregator-url/);
  t.throws(() => parseAgentArgs(['run', '--node-name', 'n', '--aggregator-url', 'ftp://x'], {}), /http or https/);
  t.throws(() => parseAgentArgs(['collect', '--sample-interval', '0'], {}), /positive number/);
  t.throws(() => parseAgentArgs(['collect', '--sample-interval', 'soon'], {}), /positive number/);
});

t.test('--log-level: one of pino\'s levels, else a usage error', async (t) => {
  t.equal(parseAgentArgs(['collect', '--log-level', 'debug'], {}).logLevel, 'debug');
  t.equal(parseAgentArgs(['collect'], { LOG_LEVEL: 'warn' }).logLevel, 'warn');
  t.throws(() => parseAgentArgs(['collect', '--log-level', 'bogus'], {}), new UsageError('--log-level: "bogus" is not a level; use one of fatal, error, warn, info, debug, trace, silent'));
  t.throws(() => parseAgentArgs(['collect'], { LOG_LEVEL: 'verbose' }), UsageError, 'from the environment too');
  // The list is pino's own: a level pino has is accepted, and nothing else.
  t.same([...LOG_LEVELS].sort(), [...Object.keys(pino.levels.values), 'silent'].sort());
});

t.test('the built agent: a bad --log-level exits 2 with the usage, no stack trace', async (t) => {
  const run = spawnSync(process.execPath, [AGENT_BIN, 'run', '--node-name', 'n', '--aggregator-url', 'http://127.0.0.1:9', '--log-level', 'bogus'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(run.status, 2);
  t.match(run.stderr, /^nodeprep-agent: --log-level: "bogus" is not a level/);
  t.match(run.stderr, /usage: nodeprep-agent/);
  t.notMatch(run.stderr, /\n\s+at /, 'no stack trace');
});

t.test('names a report carries are checked as Kubernetes names, at the command line', async (t) => {
  t.throws(() => parseAgentArgs(['collect', '--node-name', 'Worker_1'], {}), { name: 'UsageError', message: /--node-name: "Worker_1" must be a DNS-1123 subdomain/ });
  t.throws(() => parseAgentArgs(['collect', '--node-name', 'w1', '--cluster', 'eu/west'], {}), { name: 'UsageError', message: /--cluster: "eu\/west" must be a DNS-1123 label/ });
  t.throws(() => parseAgentArgs(['run', '--aggregator-url', 'http://a'], { NODE_NAME: 'node.Example.com' }), { name: 'UsageError' }, 'from the environment too');
  t.equal(parseAgentArgs(['collect', '--node-name', 'worker-1.eu.example.com', '--cluster', 'prod-eu-1'], {}).nodeName, 'worker-1.eu.example.com');
  t.equal(hostNodeName('Build_Box.Local'), 'build-box.local', 'collect\'s default: the hostname, as the kubelet would name the node');
  t.equal(hostNodeName('_'), 'localhost');
});
