// Runs the upload server against a Granary cluster:
//   node dist/examples/upload-server/main.js [--master http://127.0.0.1:9000] [--port 8080] [--prefix /uploads]
//   curl -T movie.mkv http://127.0.0.1:8080/files/movie.mkv
//   curl -r 0-1023 http://127.0.0.1:8080/files/movie.mkv | xxd | head
import { parseArgs } from 'node:util'
import { connect } from '../../client/index.js'
import { buildServer } from './server.js'

const { values } = parseArgs({
  options: {
    master: { type: 'string', default: process.env.GRANARY_MASTER ?? 'http://127.0.0.1:9000' },
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    prefix: { type: 'string', default: '/uploads' },
  },
})

const client = connect({ masters: values.master })
const app = buildServer(client, { prefix: values.prefix, logger: true })
app.addHook('onClose', async () => { await client.close() })
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { void app.close() })
await app.listen({ host: values.host, port: Number(values.port) })
