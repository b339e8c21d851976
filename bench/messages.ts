// What the IMAP benchmarks store and sign in with.

export const PASSWORD = 'benchmark password';

/** A message as mailing lists and colleagues send them: a dozen headers, text and HTML alternatives. */
export function message(i: number): Buffer {
  const text = `Hello Bob,\r\n\r\nthis is message ${i} of the benchmark. ${'Some words to make it a normal size. '.repeat(20)}\r\n\r\nAnn\r\n`;
  return Buffer.from(
    [
      `Return-Path: <ann@example.net>`,
      `Delivered-To: bob@example.org`,
      `Received: from mx.example.net (mx.example.net [192.0.2.7]) by mx.example.org with ESMTPS id ${i}; Mon, 23 Nov 2026 10:00:00 +0000`,
      `From: Ann Example <ann@example.net>`,
      `To: Bob <bob@example.org>, team@example.org`,
      `Cc: "Carl, the third" <carl@example.net>`,
      `Subject: Report number ${i} =?UTF-8?Q?f=C3=BCr?= the week`,
      `Date: Mon, 23 Nov 2026 10:${String(i % 60).padStart(2, '0')}:00 +0000`,
      `Message-ID: <bench-${i}@example.net>`,
      `In-Reply-To: <bench-${i - 1}@example.net>`,
      `MIME-Version: 1.0`,
      `Content-Type: multipart/alternative; boundary="b${i}"`,
      '',
      `--b${i}`,
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      text,
      `--b${i}`,
      'Content-Type: text/html; charset=utf-8',
      '',
      `<p>${text}</p>`,
      `--b${i}--`,
      '',
    ].join('\r\n'),
  );
}
