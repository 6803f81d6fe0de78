// The official clients (@anycable/core and @rails/actioncable, over `ws`) against ringcable's TLS listener
// (--ssl_cert/--ssl_key, wss:// with the certificate really verified: run.sh trusts the throwaway
// CA through NODE_EXTRA_CA_CERTS) with permessage-deflate enabled (`ws` offers it by default), and
// broadcasts over https:// to the same port.
import './setup_globals.mjs'
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import ActionCable from '@rails/actioncable'
import { createCable } from '@anycable/core'
import { deferred, Inbox, LoggingWebSocket, transcript, withTranscript, WAIT_MS } from './helpers.mjs'

const TLS_PORT = process.env.RINGCABLE_INTEROP_TLS_PORT
const BROADCAST_KEY = process.env.RINGCABLE_INTEROP_TLS_BROADCAST_KEY
const TEST_TIMEOUT = 30000

// Records the extension the server accepted for each socket.
const extensions = []
class ExtensionRecordingWebSocket extends LoggingWebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options)
    this.on('upgrade', res => extensions.push(res.headers['sec-websocket-extensions'] ?? ''))
  }
}

async function httpsBroadcast(publication) {
  const body = JSON.stringify(publication)
  const res = await fetch(`https://127.0.0.1:${TLS_PORT}/_broadcast`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${BROADCAST_KEY}` },
    body,
    signal: AbortSignal.timeout(WAIT_MS)
  })
  transcript.push(`HTTPS POST /_broadcast ${body} -> ${res.status}`)
  await res.arrayBuffer()
  return res.status
}

describe('@anycable/core over wss:// with permessage-deflate', { timeout: 120000 }, () => {
  let cable

  after(() => {
    cable?.disconnect()
  })

  it('connects over TLS, streams, and receives an https:// broadcast', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      assert.ok(TLS_PORT, 'RINGCABLE_INTEROP_TLS_PORT is not set; run through tests/interop/run.sh')
      cable = createCable(`wss://127.0.0.1:${TLS_PORT}/cable`, {
        protocol: 'actioncable-v1-json',
        websocketImplementation: ExtensionRecordingWebSocket,
        logLevel: 'error',
        maxReconnectAttempts: 0
      })
      const connected = deferred('cable connect over wss')
      cable.once('connect', ev => connected.resolve(ev))
      await cable.connect()
      await connected.promise
      assert.equal(cable.state, 'connected')
      assert.deepEqual(extensions, [
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover'
      ])

      const channel = cable.streamFrom('interop_tls')
      const messages = new Inbox('interop_tls messages')
      channel.on('message', msg => messages.push(msg))
      await channel.ensureSubscribed()

      // Large enough that both sides really compress (ws compresses client messages ≥ 1 KiB).
      const text = 'secure '.repeat(500)
      assert.equal(await httpsBroadcast({ stream: 'interop_tls', data: JSON.stringify({ text }) }), 201)
      assert.deepEqual(await messages.next('the https broadcast'), { text })
    }))
})

describe('@rails/actioncable over wss://', { timeout: 120000 }, () => {
  let consumer

  after(() => {
    consumer?.disconnect()
  })

  it('subscribes over TLS and receives an https:// broadcast', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      assert.ok(TLS_PORT, 'RINGCABLE_INTEROP_TLS_PORT is not set; run through tests/interop/run.sh')
      consumer = ActionCable.createConsumer(`wss://127.0.0.1:${TLS_PORT}/cable`)
      const connected = deferred('"connected" callback over wss')
      const received = new Inbox('received over wss')
      consumer.subscriptions.create(
        { channel: '$pubsub', stream_name: 'interop_tls_rails' },
        {
          connected() {
            connected.resolve(true)
          },
          received(data) {
            received.push(data)
          }
        }
      )
      await connected.promise
      const text = 'rails over tls '.repeat(100)
      assert.equal(await httpsBroadcast({ stream: 'interop_tls_rails', data: JSON.stringify({ text }) }), 201)
      assert.deepEqual(await received.next('the https broadcast'), { text })
    }))
})

// Node's TLS stack is independent of OpenSSL's record layer in ringcable: once established and
// quiet, the wss:// connections above left OpenSSL for ringcable's compact TLS 1.3 record layer
// (--ssl_compact, on by default), and everything after that (subscriptions, broadcasts, close)
// went through it without a single record failing.
describe('the compact TLS 1.3 record layer', { timeout: 120000 }, () => {
  it('carried the wss:// connections above without a TLS error', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const res = await fetch(`https://127.0.0.1:${TLS_PORT}/metrics`, { signal: AbortSignal.timeout(WAIT_MS) })
      assert.equal(res.status, 200)
      const text = await res.text()
      const sum = name =>
        text
          .split('\n')
          .filter(line => line.startsWith(name + '{') || line.startsWith(name + ' '))
          .reduce((acc, line) => acc + Number(line.split(' ').pop()), 0)
      transcript.push(`compact ${sum('ringcable_worker_tls_compact_sessions_total')}`)
      // Two wss:// clients and the https:// requests before this one (health checks, broadcasts).
      assert.ok(sum('ringcable_worker_tls_compact_sessions_total') >= 2, text)
      assert.equal(sum('ringcable_worker_tls_errors_total'), 0)
    }))
})
