// Illumio's resource allocation guidelines for C-VEN, Kubelink and Storage (design.md section 9):
// three tiers, each picked by three inputs; "if the inputs fall in different tiers, the highest
// wins". The guide's numbers are in SIZING_GUIDE below and nowhere else.
import type { ComponentResources, IllumioSizing, SizingInput, SizingInputName, SizingTier, StorageResources } from '../../protocol/illumio.js';
import { parseQuantity, quantityToNumber } from './quantity.js';

type Range = readonly [from: number, to: number | null]; // to null: "and more" (the guide's "20+")
type SizeRange = readonly [from: string, to: string];

interface GuideRow {
  tier: SizingTier;
  nodes: Range;
  workloads: Range;
  policySize: SizeRange;
  cven: ComponentResources;
  kubelink: ComponentResources;
  storage: ComponentResources & { volume: string };
}

/**
 * The guide's two tables, line by line (design.md section 9; amounts as the guide writes them,
 * "600 Mi" spelled 600Mi). Ranges are as published: a value on a boundary two tiers share
 * (10 nodes, 1000 and 5000 workloads, 1.5Mi and 500Mi of policy) belongs to the higher tier, so
 * each range includes its start and, but for the last tier, excludes its end. Above the large
 * tier's ends (8000 workloads, 1.5Gi of policy) is beyond the published guidance.
 */
export const SIZING_GUIDE: readonly GuideRow[] = [
  {
    tier: 'small', nodes: [1, 10], workloads: [0, 1000], policySize: ['0Mi', '1.5Mi'],
    //                    requests                             limits
    cven:     { requests: { cpu: '0.5', memory: '600Mi' }, limits: { cpu: '1', memory: '700Mi' } },
    kubelink: { requests: { cpu: '0.5', memory: '500Mi' }, limits: { cpu: '1', memory: '600Mi' } },
    storage:  { requests: { cpu: '0.5', memory: '500Mi' }, limits: { cpu: '1', memory: '600Mi' }, volume: '1Gi' },
  },
  {
    tier: 'medium', nodes: [10, 20], workloads: [1000, 5000], policySize: ['1.5Mi', '500Mi'],
    cven:     { requests: { cpu: '2', memory: '3Gi' }, limits: { cpu: '3', memory: '5Gi' } },
    kubelink: { requests: { cpu: '2', memory: '5Gi' }, limits: { cpu: '2', memory: '7Gi' } },
    storage:  { requests: { cpu: '1', memory: '5Gi' }, limits: { cpu: '2', memory: '7Gi' }, volume: '5Gi' },
  },
  {
    tier: 'large', nodes: [20, null], workloads: [5000, 8000], policySize: ['500Mi', '1.5Gi'],
    cven:     { requests: { cpu: '2', memory: '6Gi' }, limits: { cpu: '3', memory: '8Gi' } },
    kubelink: { requests: { cpu: '3', memory: '10Gi' }, limits: { cpu: '4', memory: '12Gi' } },
    storage:  { requests: { cpu: '1', memory: '10Gi' }, limits: { cpu: '2', memory: '12Gi' }, volume: '10Gi' },
  },
];

export const SIZING_TIERS: readonly SizingTier[] = ['small', 'medium', 'large'];

export const INPUT_LABEL: Record<SizingInputName, string> = { nodes: 'nodes', workloads: 'workloads', policyBytes: 'policy size' };

export type PolicySizeParse = { ok: true; bytes: number; display: string } | { ok: false; error: string };

const BINARY = /^(\d+(?:\.\d+)?) ?(Ki|Mi|Gi|Ti)$/;
const DECIMAL = /^(\d+(?:\.\d+)?) ?(k|K|kB|KB|M|MB|G|GB|T|TB)$/;
const BINARY_LONG = /^(\d+(?:\.\d+)?) ?(KiB|MiB|GiB|TiB|ki|mi|gi|ti|KIB|MIB|GIB|TIB)$/;
const DECIMAL_FACTOR: Record<string, number> = { k: 1e3, K: 1e3, kB: 1e3, KB: 1e3, M: 1e6, MB: 1e6, G: 1e9, GB: 1e9, T: 1e12, TB: 1e12 };

/**
 * Parses the admin's total policy size in binary units, as the guide insists: "1.5Mi", "500Mi",
 * "1Gi" (Ki and Ti too). Decimal units (MB, M, G, ...) and bare numbers are refused with a
 * message saying why, because 500MB is not 500Mi and the tier boundaries are binary.
 */
export function parsePolicySize(text: string): PolicySizeParse {
  const trimmed = text.trim();
  const binary = BINARY.exec(trimmed);
  if (binary) {
    const bytes = Math.round(quantityToNumber(parseQuantity(`${binary[1]}${binary[2]}`)));
    return { ok: true, bytes, display: formatBytes(bytes) };
  }
  const decimal = DECIMAL.exec(trimmed);
  if (decimal) {
    const bytes = Number(decimal[1]) * DECIMAL_FACTOR[decimal[2]!]!;
    return {
      ok: false,
      error:
        `policy size "${text}" uses a decimal unit (${decimal[2]} = ${DECIMAL_FACTOR[decimal[2]!]!.toLocaleString('en-US')} bytes); ` +
        `Illumio's guide gives policy sizes in binary units and its tier boundaries are binary: write Mi or Gi (1Mi = 1,048,576 bytes; "${text}" is ${formatBytes(bytes)})`,
    };
  }
  const long = BINARY_LONG.exec(trimmed);
  if (long) {
    const unit = long[2]!.slice(0, 1).toUpperCase() + 'i';
    return { ok: false, error: `policy size "${text}": write the unit as Kubernetes and the guide do, ${long[1]}${unit}` };
  }
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) return { ok: false, error: `policy size "${text}" has no unit: write Mi or Gi, e.g. 1.5Mi, 500Mi, 1Gi` };
  return { ok: false, error: `policy size "${text}" is not a size: write a number and Mi or Gi, e.g. 1.5Mi, 500Mi, 1Gi` };
}

/** Bytes in the largest binary unit that keeps the number at least 1, up to two decimals: "1.5Mi". */
export function formatBytes(bytes: number): string {
  const units = ['Ti', 'Gi', 'Mi', 'Ki'] as const;
  for (let i = 0; i < units.length; i++) {
    const size = 1024 ** (units.length - i);
    if (bytes >= size) return `${Number((bytes / size).toFixed(2))}${units[i]}`;
  }
  return `${bytes}`;
}

function bytesOf(size: string): number {
  const parsed = parsePolicySize(size);
  if (!parsed.ok) throw new Error(`SIZING_GUIDE: ${parsed.error}`);
  return parsed.bytes;
}

/** For each input, each tier's [from, to] as numbers (bytes for the policy size). */
const RANGES: Record<SizingInputName, readonly (readonly [number, number | null])[]> = {
  nodes: SIZING_GUIDE.map((row) => row.nodes),
  workloads: SIZING_GUIDE.map((row) => row.workloads),
  policyBytes: SIZING_GUIDE.map((row) => [bytesOf(row.policySize[0]), bytesOf(row.policySize[1])] as const),
};

/** The tier one input picks, and whether it is beyond the large tier's published range. */
export function tierOf(name: SizingInputName, value: number): { tier: SizingTier; beyondGuidance: boolean } {
  const ranges = RANGES[name];
  let index = 0; // below the small tier's start (0 nodes): small
  ranges.forEach(([from], i) => {
    if (value >= from) index = i;
  });
  const last = ranges[ranges.length - 1]![1];
  return { tier: SIZING_TIERS[index]!, beyondGuidance: last !== null && value > last };
}

export function tierResources(tier: SizingTier): IllumioSizing['resources'] {
  const row = SIZING_GUIDE.find((r) => r.tier === tier)!;
  const storage: StorageResources = { ...row.storage, sizeGi: Math.round(bytesOf(row.storage.volume) / 1024 ** 3) };
  return { cven: row.cven, kubelink: row.kubelink, storage };
}

export interface SizingValue {
  value: number;
  /** Where it comes from, for the answer: "Node objects in the API", "reporting nodes", "pods counted", "configured". */
  source: string;
}

export interface SizingInputs {
  nodes?: SizingValue;
  workloads?: SizingValue;
  /** Total policy size in bytes (parsePolicySize turns the admin's "500Mi" into bytes). */
  policyBytes?: SizingValue;
}

const NAMES: readonly SizingInputName[] = ['nodes', 'workloads', 'policyBytes'];

function display(name: SizingInputName, value: number): string {
  return name === 'policyBytes' ? formatBytes(value) : String(value);
}

function describeInput(input: SizingInput): string {
  return `${INPUT_LABEL[input.name]} ${input.display} (${input.source})`;
}

function list(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/**
 * The guide's answer for the known inputs: each picks a tier, the highest wins. An unknown input
 * is named ("the tier may be higher"); an input above the large tier's range makes large the
 * minimum and the answer says the cluster is beyond the published guidance. Throws a RangeError
 * for a negative, non-finite, or (for counts) fractional value: that is the caller's bug.
 */
export function decideSizing(inputs: SizingInputs): IllumioSizing {
  const verdicts = {} as Record<SizingInputName, SizingInput>;
  for (const name of NAMES) {
    const given = inputs[name];
    if (given === undefined) {
      verdicts[name] = { name, known: false, beyondGuidance: false };
      continue;
    }
    const { value, source } = given;
    if (!Number.isFinite(value) || value < 0 || (name !== 'policyBytes' && !Number.isInteger(value))) {
      throw new RangeError(`sizing input ${name}: ${value} is not a ${name === 'policyBytes' ? 'size in bytes' : 'count'}`);
    }
    verdicts[name] = { name, known: true, value, display: display(name, value), source, ...tierOf(name, value) };
  }
  const known = NAMES.map((n) => verdicts[n]).filter((v) => v.known);
  const index = Math.max(0, ...known.map((v) => SIZING_TIERS.indexOf(v.tier!)));
  const tier = SIZING_TIERS[index]!;
  const decidedBy = known.filter((v) => v.tier === tier).map((v) => v.name);
  const unknownInputs = NAMES.filter((n) => !verdicts[n].known);
  const beyond = known.filter((v) => v.beyondGuidance);
  const mayBeHigher = unknownInputs.length > 0 && tier !== 'large';

  const parts: string[] = [];
  if (known.length === 0) parts.push(`${tier}, the smallest tier: no input is known`);
  else parts.push(`${tier}, decided by ${list(decidedBy.map((n) => describeInput(verdicts[n])))}`);
  if (beyond.length > 0) {
    parts.push(
      `${list(beyond.map((v) => `${INPUT_LABEL[v.name]} ${v.display}`))} ${beyond.length === 1 ? 'is' : 'are'} beyond the published guidance ` +
        '(up to 8000 workloads and 1.5Gi of policy): large is the minimum; ask Illumio for sizing',
    );
  }
  if (unknownInputs.length > 0) {
    const names = list(unknownInputs.map((n) => INPUT_LABEL[n]));
    parts.push(mayBeHigher ? `${names} unknown: the tier may be higher` : `${names} unknown: the cluster may be beyond the published guidance`);
  }
  return {
    tier,
    decidedBy,
    inputs: verdicts,
    unknownInputs,
    mayBeHigher,
    beyondGuidance: beyond.length > 0,
    reason: parts.join('; '),
    resources: tierResources(tier),
  };
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

function resourcesYaml(r: ComponentResources, indent: string): string[] {
  return [
    `${indent}resources:`,
    `${indent}  requests:`,
    `${indent}    cpu: "${r.requests.cpu}"`,
    `${indent}    memory: ${r.requests.memory}`,
    `${indent}  limits:`,
    `${indent}    cpu: "${r.limits.cpu}"`,
    `${indent}    memory: ${r.limits.memory}`,
  ];
}

/**
 * The block to paste into Illumio's illumio-values.yaml: cven.resources, kubelink.resources,
 * storage.resources and storage.sizeGi, with the guide's units (cpu as the guide writes it, quoted
 * so it stays a string; memory in Mi/Gi), under a comment that says the tier, what decided it,
 * what is unknown, and to raise limits when usage reaches 80% of them.
 */
export function renderIllumioValues(answer: IllumioSizing): string {
  const header = [
    `# Illumio resource sizing from nodeprep: tier ${answer.tier} (Illumio's resource allocation guidelines).`,
    `# Decided by: ${answer.decidedBy.length === 0 ? 'no input is known; small is the minimum' : oneLine(list(answer.decidedBy.map((n) => describeInput(answer.inputs[n]))))}.`,
    `# Inputs: ${NAMES.map((n) => answer.inputs[n]).map((v) => (v.known ? `${describeInput(v)} -> ${v.tier}` : `${INPUT_LABEL[v.name]} unknown`)).map(oneLine).join('; ')}.`,
    `# Unknown inputs: ${answer.unknownInputs.length === 0 ? 'none' : `${list(answer.unknownInputs.map((n) => INPUT_LABEL[n]))}${answer.mayBeHigher ? ' (the tier may be higher)' : ''}`}.`,
    ...(answer.beyondGuidance ? ['# Beyond the published guidance: these are the large tier\'s values, a minimum; ask Illumio for sizing.'] : []),
    '# Raise limits when usage reaches 80% of them.',
    '# Merge into the cven:, kubelink: and storage: blocks already in illumio-values.yaml: a second key of the same',
    '# name replaces the first. Each resources block replaces the chart\'s default as a whole.',
  ];
  const { cven, kubelink, storage } = answer.resources;
  return [
    ...header,
    'cven:',
    ...resourcesYaml(cven, '  '),
    'kubelink:',
    ...resourcesYaml(kubelink, '  '),
    'storage:',
    ...resourcesYaml(storage, '  '),
    `  sizeGi: ${storage.sizeGi}`,
    '',
  ].join('\n');
}
