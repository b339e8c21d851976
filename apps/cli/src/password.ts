/**
 * Passwords come from a prompt (twice, without echo) or from standard input,
 * never from the command line, where other users could read them in the
 * process list and the shell history could keep them.
 */
import { CliError, type Io } from './context.ts';

const MIN_LENGTH = 8;
const MAX_LENGTH = 1024;

async function readLineFromPipe(stdin: Io['stdin']): Promise<string> {
  let data = '';
  for await (const chunk of stdin) {
    data += chunk.toString();
    if (data.includes('\n') || data.length > MAX_LENGTH * 2) break;
  }
  return data.split(/\r?\n/)[0] ?? '';
}

function prompt(io: Io, question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const { stdin } = io;
    io.stderr.write(question);
    stdin.setRawMode?.(true);
    stdin.resume();
    let value = '';
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new CliError('cancelled'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      io.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}

export async function readNewPassword(io: Io): Promise<string> {
  let password: string;
  if (io.stdin.isTTY) {
    password = await prompt(io, 'New password: ');
    const again = await prompt(io, 'Repeat password: ');
    if (again !== password) throw new CliError('the passwords do not match');
  } else {
    password = await readLineFromPipe(io.stdin);
  }
  if (password.length === 0)
    throw new CliError('no password given: type it at the prompt or pipe it on standard input');
  if (password.length < MIN_LENGTH)
    throw new CliError(`the password must be at least ${MIN_LENGTH} characters long`);
  if (password.length > MAX_LENGTH)
    throw new CliError(`the password must be at most ${MAX_LENGTH} characters long`);
  return password;
}

export async function readPassword(io: Io): Promise<string> {
  return io.stdin.isTTY ? prompt(io, 'Password: ') : readLineFromPipe(io.stdin);
}
