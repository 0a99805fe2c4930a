/* sdnotify.h — tells a service manager (systemd Type=notify) how the gateway is doing: the
 * NOTIFY_SOCKET datagram protocol, spoken directly. */
#ifndef SLUICE_SDNOTIFY_H
#define SLUICE_SDNOTIFY_H

/* Sends state, newline-separated VAR=value lines such as "READY=1" or "STOPPING=1", to the
 * socket NOTIFY_SOCKET names (a path, or "@name" for an abstract socket). Returns 1 when sent,
 * 0 when no manager listens (NOTIFY_SOCKET unset), -1 when sending failed (errno set). */
int sdnotify(const char *state);

#endif
