// @anycable/core over actioncable-v1-ext-json against two ringcable nodes sharing one broker,
// --broker redis or --broker nats (broker.sh): the client connects to node A, its socket drops,
// messages are published on node B while it is away, and it reconnects to node B with its sid: the session is
// restored there (no Connect), and the client's history request catches up every missed message
// exactly once, in order, with the positions node A had given it.
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { createCable } from '@anycable/core'
import { broadcast, deferred, Inbox, LoggingWebSocket, transcript, withTranscript } from './helpers.mjs'

const PORT_A = process.env.RINGCABLE_INTEROP_PORT
const PORT_B = process.env.RINGCABLE_INTEROP_PORT_B
const BROADCAST_B = process.env.RINGCABLE_INTEROP_BROADCAST_PORT_B

// The load balancer: the first connection goes to node A, every later one to node B.
let opened = 0
class BalancedWebSocket extends LoggingWebSocket {
  constructor(url, protocols, options) {
    super(opened++ === 0 ? url : url.replace(`:${PORT_A}/`, `:${PORT_B}/`), protocols, options)
  }
}

async function broadcastB(publication) {
  const body = JSON.stringify(publication)
  const res = await fetch(`http://127.0.0.1:${BROADCAST_B}/_broadcast`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body,
    signal: AbortSignal.timeout(10000)
  })
  transcript.push(`HTTP POST B /_broadcast ${body} -> ${res.status}`)
  await res.arrayBuffer()
  return res.status
}

describe('@anycable/core across two ringcable nodes with a shared broker', { timeout: 60000 }, () => {
  let cable

  after(() => {
    cable?.disconnect()
  })

  it('restores on the other node and catches up exactly once', { timeout: 30000 }, () =>
    withTranscript(async () => {
      cable = createCable(`ws://127.0.0.1:${PORT_A}/cable?user=alice`, {
        protocol: 'actioncable-v1-ext-json',
        websocketImplementation: BalancedWebSocket,
        logLevel: 'error',
        maxReconnectAttempts: 10
      })
      const connected = deferred('cable connect')
      cable.once('connect', ev => connected.resolve(ev))
      await cable.connect()
      assert.deepEqual(await connected.promise, { reconnect: false, restored: false })
      const sid = cable.sessionId

      const messages = new Inbox('channel messages')
      const channel = cable.subscribeTo('ChatChannel', { stream: 'rb_room' })
      channel.on('message', (msg, meta) => messages.push({ msg, meta }))
      await channel.ensureSubscribed()

      assert.equal(await broadcast({ stream: 'rb_room', data: JSON.stringify({ n: 1 }) }), 201)
      const first = await messages.next('the first broadcast (node A)')
      assert.deepEqual(first.msg, { n: 1 })
      assert.equal(first.meta.offset, 1)
      const epoch = first.meta.epoch

      // Drop the socket without a close frame; publish on node B while the client is away.
      const restored = deferred('restored connect on node B', 20000)
      cable.once('connect', ev => restored.resolve(ev))
      cable.transport.ws.terminate()
      for (const n of [2, 3, 4]) {
        assert.equal(await broadcastB({ stream: 'rb_room', data: JSON.stringify({ n }) }), 201)
      }
      assert.deepEqual(await restored.promise, { reconnect: true, restored: true })
      assert.notEqual(cable.sessionId, sid)

      for (const n of [2, 3, 4]) {
        const m = await messages.next(`missed message ${n}`)
        assert.deepEqual(m.msg, { n })
        assert.equal(m.meta.offset, n)
        assert.equal(m.meta.epoch, epoch)
      }
      // Live on node B now; nothing repeated before it.
      assert.equal(await broadcastB({ stream: 'rb_room', data: JSON.stringify({ n: 5 }) }), 201)
      const live = await messages.next('the live message on node B')
      assert.deepEqual(live.msg, { n: 5 })
      assert.equal(live.meta.offset, 5)
      assert.ok(transcript.some(l => l.startsWith('#2 open ') && l.includes(`:${PORT_B}/`)),
        'the second socket went to node B')
    }))
})
