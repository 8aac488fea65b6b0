// The smallest Node.js function: an async handler that returns a greeting.
exports.handler = async (event, context) => {
  const name = (event && event.name) || "world";
  console.log(`greeting ${name}`);
  return { message: `Hello, ${name}!`, request_id: context.awsRequestId };
};
