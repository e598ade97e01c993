/**
 * The QR encoder (qrcode's encoder and SVG renderer, ~23 KB), in its own bundle `dist/qr.js`:
 * loaded on the first QR code, not at activation (qrView.ts requires it by path).
 */
import { create } from 'qrcode/lib/core/qrcode';
import { render } from 'qrcode/lib/renderer/svg-tag';

export function qrSvg(text: string): string {
  return render(create(text, { errorCorrectionLevel: 'M' }), { margin: 2, color: { dark: '#000000', light: '#ffffff' } });
}
