import QRCode from 'qrcode';

/**
 * Renders `text` as a QR code drawn with Unicode half blocks, two modules per
 * character cell.
 *
 * With `colours`, the `terminal` renderer sets black on white itself with ANSI
 * escape codes, so phones scan it whatever the terminal's theme. Without, the
 * `utf8` renderer prints plain characters in which a block is a dark module.
 * That text scans when it is shown dark on light. On a dark theme it shows
 * inverted, which some scanners do not read.
 */
async function renderQrCode(text: string, colours: boolean): Promise<string> {
  // The lowest error correction keeps the code small: a screen has no smudges to correct.
  const errorCorrectionLevel = 'L';
  if (colours) return QRCode.toString(text, { type: 'terminal', small: true, errorCorrectionLevel });
  return QRCode.toString(text, { type: 'utf8', errorCorrectionLevel });
}

/**
 * Renders the QR code of `link` for `login`, or returns undefined when there
 * is no link or none is printed. `option` is `--qr` (true) or `--no-qr`
 * (false). Without either, the code is printed only when standard output is a
 * terminal.
 */
export async function renderLinkQrCode(
  link: string | undefined,
  option: boolean | undefined,
): Promise<string | undefined> {
  const terminal = process.stdout.isTTY === true;
  if (link === undefined || !(option ?? terminal)) return undefined;

  // A file or a log gets no escape codes, and NO_COLOR (no-color.org) turns colours off on a terminal.
  const colours = terminal && (process.env.NO_COLOR ?? '') === '';
  return renderQrCode(link, colours);
}
