/**
 * The Inspector page and Choose Shared Tools…: their own bundle, `dist/panels.js`, loaded on first
 * use (see panelsModule.ts), so activation does not pay for them.
 */
export { InspectorPanels } from './inspectorPanel';
export { chooseShareTools } from './toolsPicker';
