// Presence with the official client: channel.presence of @anycable/core over
// actioncable-v1-ext-json on a signed $pubsub stream (--broker memory, --streams_presence default):
// join / info / leave, with the other client seeing the join and leave events.
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { createCable } from '@anycable/core'
import { cableURL, deferred, Inbox, LoggingWebSocket, withTranscript } from './helpers.mjs'

const TEST_TIMEOUT = 30000
const STREAMS_SECRET = process.env.RINGCABLE_INTEROP_STREAMS_SECRET

function signStream(name, secret) {
  const data = Buffer.from(JSON.stringify(name)).toString('base64')
  return `${data}--${createHmac('sha256', secret).update(data).digest('hex')}`
}

function extCable(user) {
  return createCable(cableURL(`user=${user}`), {
    protocol: 'actioncable-v1-ext-json',
    websocketImplementation: LoggingWebSocket,
    logLevel: 'error',
    maxReconnectAttempts: 0
  })
}

describe('@anycable/core presence', { timeout: 120000 }, () => {
  const cables = []

  after(() => {
    for (const c of cables) c.disconnect()
  })

  it('join, info and leave through channel.presence', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      assert.ok(STREAMS_SECRET, 'run through tests/interop/run.sh')
      const signed = signStream('presence-room', STREAMS_SECRET)
      const alice = extCable('alice')
      const bob = extCable('bob')
      cables.push(alice, bob)
      const aliceChannel = alice.streamFromSigned(signed)
      const bobChannel = bob.streamFromSigned(signed)
      const bobEvents = new Inbox('bob presence events')
      bobChannel.on('presence', ev => { if (ev.type !== 'info') bobEvents.push(ev) })
      await Promise.race([aliceChannel.ensureSubscribed(), deferred('alice confirmation').promise])
      await Promise.race([bobChannel.ensureSubscribed(), deferred('bob confirmation').promise])

      assert.deepEqual(await bobChannel.presence.info(), {})
      await aliceChannel.presence.join('42', { name: 'Alice' })
      assert.deepEqual(await bobEvents.next('the join event'),
        { type: 'join', id: '42', info: { name: 'Alice' } })
      // bob's presence state follows the events once it has an info snapshot.
      assert.deepEqual(await bobChannel.presence.info(), { 42: { name: 'Alice' } })
      assert.deepEqual(await aliceChannel.presence.info(), { 42: { name: 'Alice' } })

      await aliceChannel.presence.leave()
      assert.deepEqual(await bobEvents.next('the leave event'), { type: 'leave', id: '42' })
      assert.deepEqual(await bobChannel.presence.info(), {})
    }))
})
