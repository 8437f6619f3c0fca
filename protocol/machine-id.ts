// The machine ID never leaves the node as it is. machine-id(5) asks applications to treat it as
// confidential and to derive their own ID from it; this is systemd's derivation,
// sd_id128_get_machine_app_specific(): HMAC-SHA256 keyed by the 16 bytes of the machine ID over
// the 16 bytes of an application ID, cut to 16 bytes and marked as a version-4 UUID. Equal
// machine IDs give equal application-specific IDs, so duplicates are still found, and an admin
// gets the same value on a node with `systemd-id128 machine-id --app-specific=<NODEPREP_APP_ID>`.
// The agent derives it from /etc/machine-id; the aggregator derives it from the kubelet's copy
// (Node status.nodeInfo.machineID) to compare the two. No zod here: the agent loads this file.
import { createHmac } from 'node:crypto';

/** nodeprep's application ID (random, fixed forever: changing it changes every derived ID). */
export const NODEPREP_APP_ID = '50b992c63754482dae67861f29381c6a';

const MACHINE_ID = /^[0-9a-f]{32}$/;

/** The application-specific ID of a valid machine ID (32 lowercase hex digits); undefined otherwise. */
export function appSpecificMachineId(machineId: string): string | undefined {
  if (!MACHINE_ID.test(machineId) || /^0+$/.test(machineId)) return undefined;
  const digest = createHmac('sha256', Buffer.from(machineId, 'hex')).update(Buffer.from(NODEPREP_APP_ID, 'hex')).digest();
  const id = digest.subarray(0, 16);
  id[6] = (id[6]! & 0x0f) | 0x40; // UUID version 4
  id[8] = (id[8]! & 0x3f) | 0x80; // RFC 4122 variant
  return id.toString('hex');
}
