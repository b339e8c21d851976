// The container's health check: the service at MAILWERK_HEALTHCHECK (host:port) greets within 4 s with
// what its protocol greets with (SMTP and LMTP "220 ", IMAP "* OK", POP3 "+OK"). Exit 0 healthy, 1 not.
import { connect } from 'node:net';

const [host, port] = (process.env.MAILWERK_HEALTHCHECK ?? '127.0.0.1:2525').split(/:(?=\d+$)/);
const socket = connect({ host, port: Number(port) });
const fail = () => process.exit(1);
socket.setTimeout(4000, fail);
socket.once('error', fail);
socket.once('data', (d) => {
  socket.destroy();
  process.exit(/^(220 |\* OK|\+OK)/.test(d.toString('latin1')) ? 0 : 1);
});
