// The two pieces of `qrcode` we use (the encoder and the SVG renderer), without its PNG/canvas
// renderers: ~23 KB instead of the whole package.
declare module 'qrcode/lib/core/qrcode' {
  export interface QRCodeData {
    modules: { size: number; data: Uint8Array };
  }
  export function create(text: string, options?: { errorCorrectionLevel?: 'L' | 'M' | 'Q' | 'H' }): QRCodeData;
}
declare module 'qrcode/lib/renderer/svg-tag' {
  import type { QRCodeData } from 'qrcode/lib/core/qrcode';
  export function render(qr: QRCodeData, options?: { margin?: number; color?: { dark?: string; light?: string } }): string;
}
