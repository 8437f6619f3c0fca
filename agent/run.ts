export async function runAgent(_cmd: import('./cli.js').AgentCommand): Promise<number> { throw new Error('not yet'); }
