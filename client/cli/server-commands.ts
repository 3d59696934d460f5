// The names of the CLI's server commands (the commands args.ts marks kind 'server'), in a module of their own:
// cli.ts must tell a server from a client command before it loads anything else, to choose between the CLI
// bundle (client commands, bundle.ts) and the ES modules (servers). args.ts asserts the two lists agree.
export const serverCommandNames: ReadonlySet<string> = new Set(['up', 'chaos', 'master', 'shadow', 'chunkserver', 's3'])
