// @anycable/core with the extended protocol (actioncable-v1-ext-json) against ringcable started
// with --broker memory (run.sh): positions on broadcasts, session restore after a dropped socket
// (no Connect/subscribe RPC; the client then asks for history), and catch-up of what was published
// while it was away — each message exactly once.
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { createCable } from '@anycable/core'
import { cableURL, broadcast, deferred, Inbox, LoggingWebSocket, withTranscript } from './helpers.mjs'

const TEST_TIMEOUT = 30000

describe('@anycable/core over actioncable-v1-ext-json', { timeout: 120000 }, () => {
  let cable

  after(() => {
    cable?.disconnect()
  })

  it('restores the session after a dropped socket and catches up through history', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      cable = createCable(cableURL('user=alice'), {
        protocol: 'actioncable-v1-ext-json',
        websocketImplementation: LoggingWebSocket,
        logLevel: 'error',
        maxReconnectAttempts: 10
      })
      const connected = deferred('cable connect')
      cable.once('connect', ev => connected.resolve(ev))
      await cable.connect()
      assert.deepEqual(await connected.promise, { reconnect: false, restored: false })
      const sid = cable.sessionId
      assert.match(sid, /^[A-Za-z0-9_-]{21}$/)

      const messages = new Inbox('channel messages')
      const channel = cable.subscribeTo('ChatChannel', { stream: 'ext_room' })
      channel.on('message', (msg, meta) => messages.push({ msg, meta }))
      await Promise.race([channel.ensureSubscribed(), deferred('subscription confirmation').promise])

      assert.equal(await broadcast({ stream: 'ext_room', data: JSON.stringify({ n: 1 }) }), 201)
      const first = await messages.next('the first broadcast')
      assert.deepEqual(first.msg, { n: 1 })
      assert.equal(first.meta.stream, 'ext_room')
      assert.equal(first.meta.offset, 1)
      assert.match(first.meta.epoch, /^[A-Za-z0-9_-]{4}$/)

      // Drop the TCP connection without a close frame; publish while the client is away.
      const restored = deferred('restored connect', 20000)
      cable.once('connect', ev => restored.resolve(ev))
      cable.transport.ws.terminate()
      assert.equal(await broadcast({ stream: 'ext_room', data: JSON.stringify({ n: 2 }) }), 201)
      assert.deepEqual(await restored.promise, { reconnect: true, restored: true })
      assert.notEqual(cable.sessionId, sid, 'a restored session gets a new sid')

      assert.equal(await broadcast({ stream: 'ext_room', data: JSON.stringify({ n: 3 }) }), 201)
      const second = await messages.next('the message published while away')
      assert.deepEqual(second.msg, { n: 2 })
      assert.equal(second.meta.offset, 2)
      const third = await messages.next('the live message after the restore')
      assert.deepEqual(third.msg, { n: 3 })
      assert.equal(third.meta.offset, 3)
      // Nothing twice: a barrier message comes next.
      assert.equal(await broadcast({ stream: 'ext_room', data: JSON.stringify({ n: 4 }) }), 201)
      assert.deepEqual((await messages.next('the barrier')).msg, { n: 4 })
    }))
})
