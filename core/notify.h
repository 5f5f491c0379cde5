/*
 * The systemd readiness protocol (sd_notify(3)), spoken directly.
 *
 * aosd sends four messages (READY=1, RELOADING=1, STOPPING=1) and needs
 * nothing else from libsystemd; linking it cost a megabyte of resident
 * memory and five more libraries (gcrypt, lz4, zstd, lzma, cap) in every
 * process.  The protocol is one datagram to the AF_UNIX socket named by
 * $NOTIFY_SOCKET, which systemd documents as stable; Redis sends it the
 * same way.
 */
#ifndef AOS_NOTIFY_H
#define AOS_NOTIFY_H

/* Sends state ("READY=1", ...) to the service manager.  1 when sent, 0
 * when not running under one ($NOTIFY_SOCKET unset or empty), -1 with
 * errno on failure (a bad socket address: EINVAL; or what sendto says).
 * Never blocks for long: the socket is a datagram socket and the send is
 * MSG_DONTWAIT. */
int aos_notify(const char *state);

#endif
