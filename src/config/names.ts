/**
 * What host, user and list-item names may look like, shared by both file
 * formats. Nothing here may start with "-": these values end up as ssh
 * arguments or config lookups, where a leading dash reads as an option.
 */
export const HOST_NAME_PATTERN = /^[A-Za-z0-9_.%:][A-Za-z0-9_.%:-]*$/;
export const USER_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
/** Systems and features: Nix's machines format separates columns by whitespace and items by commas. */
export const LIST_ITEM_PATTERN = /^[^\s,;#]+$/;
