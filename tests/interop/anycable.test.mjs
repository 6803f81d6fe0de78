// The official AnyCable JS client (@anycable/core) against ringcable + the rpc_stub demo app.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { createCable, SubscriptionRejectedError, DisconnectedError } from '@anycable/core'
import { cableURL, broadcast, deferred, Inbox, LoggingWebSocket, withTranscript } from './helpers.mjs'

const TEST_TIMEOUT = 30000

// Under Node there is no global WebSocket: the implementation is passed explicitly (README:
// "websocketImplementation"). LoggingWebSocket is the `ws` class plus frame recording.
function newCable(query) {
  return createCable(cableURL(query), {
    protocol: 'actioncable-v1-json',
    websocketImplementation: LoggingWebSocket,
    logLevel: 'error',
    // A failed scenario must not turn into an endless reconnect loop.
    maxReconnectAttempts: 0
  })
}

describe('@anycable/core', { timeout: 120000 }, () => {
  let cable
  let channel
  const messages = new Inbox('channel messages')

  before(() => {
    cable = newCable('user=alice')
  })

  after(() => {
    cable?.disconnect()
  })

  it('connects (welcome) and subscribes via subscribeTo', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const connected = deferred('cable connect')
      cable.once('connect', ev => connected.resolve(ev))
      await cable.connect()
      assert.equal(cable.state, 'connected')
      assert.deepEqual(await connected.promise, { reconnect: false, restored: false })
      assert.ok(cable.sessionId, 'welcome should carry a sid')

      channel = cable.subscribeTo('ChatChannel', { stream: 'room2' })
      channel.on('message', msg => messages.push(msg))
      await Promise.race([channel.ensureSubscribed(), deferred('subscription confirmation').promise])
      assert.equal(channel.state, 'connected')
      assert.deepEqual(JSON.parse(channel.identifier), { channel: 'ChatChannel', stream: 'room2' })
    }))

  it('await channel.perform("echo") round-trips through the message handler', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      assert.ok(channel, 'needs the channel from the first scenario')
      await channel.perform('echo', { text: 'ping from anycable' })
      assert.deepEqual(await messages.next('the echo reply'), { text: 'ping from anycable', action: 'echo' })
    }))

  it('receives an HTTP broadcast', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      assert.ok(channel, 'needs the channel from the first scenario')
      assert.equal(await broadcast({ stream: 'room2', data: JSON.stringify({ text: 'hello' }) }), 201)
      assert.deepEqual(await messages.next('the broadcast'), { text: 'hello' })
    }))

  it('a rejected subscription rejects ensureSubscribed', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const rejected = cable.subscribeTo('RejectChannel')
      await assert.rejects(
        Promise.race([rejected.ensureSubscribed(), deferred('subscription rejection').promise]),
        SubscriptionRejectedError
      )
      // The other channel is unaffected.
      await channel.perform('echo', { n: 2 })
      assert.deepEqual(await messages.next('the echo after the rejection'), { n: 2, action: 'echo' })
    }))

  it('disconnects cleanly', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const ws = cable.transport.ws
      assert.ok(ws, 'an open socket is expected')
      const socketClosed = deferred('the WebSocket close event')
      ws.once('close', code => socketClosed.resolve(code))
      const cableClosed = deferred('cable close event')
      cable.once('close', err => cableClosed.resolve(err))
      const channelDisconnected = deferred('channel disconnect event')
      channel.once('disconnect', err => channelDisconnected.resolve(err))

      cable.disconnect()

      assert.equal(await cableClosed.promise, undefined, 'a user-initiated close carries no error')
      assert.equal(cable.state, 'closed')
      const err = await channelDisconnected.promise
      assert.ok(err instanceof DisconnectedError)
      assert.equal(err.reason, 'cable_closed')
      const code = await socketClosed.promise
      assert.ok([1000, 1005].includes(code), `unexpected close code ${code}`)
      assert.equal(ws.readyState, WebSocket.CLOSED)
    }))

  it('a connection rejected by the app closes the cable with reason unauthorized', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const denied = newCable('user=mallory&reject=1')
      try {
        const closed = deferred('cable close event')
        denied.once('close', err => closed.resolve(err))
        await assert.rejects(denied.connect(), err => {
          assert.ok(err instanceof DisconnectedError, `got ${err}`)
          assert.equal(err.reason, 'unauthorized')
          return true
        })
        const err = await closed.promise
        assert.equal(err.reason, 'unauthorized')
        assert.equal(denied.state, 'closed')
      } finally {
        denied.disconnect()
      }
    }))
})
