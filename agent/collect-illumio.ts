// Illumio on the host: the C-VEN DaemonSet mounts /opt/illumio_ven_data (a server VEN uses it
// too), and a server VEN installs /opt/illumio_ven/illumio-ven-ctl (illumio/illumio.core).
import { access } from 'node:fs/promises';
import path from 'node:path';

export async function collectIllumioMarkers(hostRoot: string): Promise<{ hostDataDir: boolean; serverVen: boolean }> {
  const [hostDataDir, serverVen] = await Promise.all([
    exists(path.join(hostRoot, 'opt/illumio_ven_data')),
    exists(path.join(hostRoot, 'opt/illumio_ven/illumio-ven-ctl')),
  ]);
  return { hostDataDir, serverVen };
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}
