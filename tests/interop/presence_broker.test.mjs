// Cluster-wide presence (issue #15) with the official client: channel.presence of @anycable/core
// over actioncable-v1-ext-json, alice on node A and bob on node B (broker.sh redis|nats: --broker
// redis or nats, --public_streams), on a public $pubsub stream. bob sees alice's join and leave events, and both
// list the same records through either node.
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { createCable } from '@anycable/core'
import { deferred, Inbox, LoggingWebSocket, withTranscript } from './helpers.mjs'

const PORT_A = process.env.RINGCABLE_INTEROP_PORT
const PORT_B = process.env.RINGCABLE_INTEROP_PORT_B

function extCable(port, user) {
  return createCable(`ws://127.0.0.1:${port}/cable?user=${user}`, {
    protocol: 'actioncable-v1-ext-json',
    websocketImplementation: LoggingWebSocket,
    logLevel: 'error',
    maxReconnectAttempts: 0
  })
}

describe(`@anycable/core presence across two ringcable nodes (--broker ${process.env.RINGCABLE_INTEROP_BROKER || 'redis'})`, { timeout: 60000 }, () => {
  const cables = []

  after(() => {
    for (const c of cables) c.disconnect()
  })

  it('join on node A, events and info on node B, leave everywhere', { timeout: 30000 }, () =>
    withTranscript(async () => {
      const alice = extCable(PORT_A, 'alice')
      const bob = extCable(PORT_B, 'bob')
      cables.push(alice, bob)
      const aliceChannel = alice.streamFrom('presence-cluster-room')
      const bobChannel = bob.streamFrom('presence-cluster-room')
      const bobEvents = new Inbox('bob presence events')
      bobChannel.on('presence', ev => { if (ev.type !== 'info') bobEvents.push(ev) })
      await Promise.race([aliceChannel.ensureSubscribed(), deferred('alice confirmation').promise])
      await Promise.race([bobChannel.ensureSubscribed(), deferred('bob confirmation').promise])

      assert.deepEqual(await bobChannel.presence.info(), {})
      await aliceChannel.presence.join('42', { name: 'Alice' })
      assert.deepEqual(await bobEvents.next('the join event'),
        { type: 'join', id: '42', info: { name: 'Alice' } })
      assert.deepEqual(await bobChannel.presence.info(), { 42: { name: 'Alice' } })
      assert.deepEqual(await aliceChannel.presence.info(), { 42: { name: 'Alice' } })

      await aliceChannel.presence.leave()
      assert.deepEqual(await bobEvents.next('the leave event'), { type: 'leave', id: '42' })
      assert.deepEqual(await bobChannel.presence.info(), {})
    }))
})
